"""Operations routes: liveness, readiness, metrics and the OpenAPI contract."""

from __future__ import annotations

import hmac
from pathlib import Path

from flask import Blueprint, Response, request

from .. import metrics
from ..settings import PROJECT_ROOT
from .responses import error_response, json_response
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


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    """The Prometheus metrics of every worker; behind a bearer token when one is configured."""
    token = state().settings.metrics_token
    if token is not None and not _bearer_matches(token.get_secret_value()):
        return error_response(
            401, "login", "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    body, media_type = metrics.exposition()
    return Response(body, content_type=media_type)


def _bearer_matches(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


@bp.get("/openapi.yaml")
def openapi() -> Response:
    text = Path(OPENAPI_PATH).read_text("utf-8")
    return Response(text, mimetype="application/yaml")
