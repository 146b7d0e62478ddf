"""Operations routes: liveness, readiness and the OpenAPI contract."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from ..settings import PROJECT_ROOT
from .responses import json_response
from .state import state

bp = Blueprint("ops", __name__)
OPENAPI_PATH = PROJECT_ROOT / "openapi.yaml"


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    s = state()
    body = {"status": "ready", "knowledge": s.knowledge.version, "rules": len(s.knowledge.rules)}
    if s.audit is not None:  # this worker's audit writer: the cards go out even when it fails
        body["audit"] = s.audit.writer.stats()
    return json_response(body)


@bp.get("/openapi.yaml")
def openapi() -> Response:
    text = Path(OPENAPI_PATH).read_text("utf-8")
    return Response(text, mimetype="application/yaml")
