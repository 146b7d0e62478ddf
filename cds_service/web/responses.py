"""JSON responses, including the OperationOutcome every error answer carries."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response

from ..core.outcome import operation_outcome


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        text: bytes | str = orjson.dumps(body)
    except TypeError:  # what orjson does not write (a non-string key, a 65-bit integer)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json", headers=headers)


def unknown_service(service_id: str) -> Response:
    """The 404 for a service id discovery does not list."""
    return error_response(404, "not-found", f"no CDS service with id '{service_id}'")


def error_response(
    status: int,
    code: str,
    diagnostics: str,
    *,
    expression: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A non-2xx answer: an OperationOutcome with a reason a developer understands."""
    body = operation_outcome(code, diagnostics, expression=expression)
    return json_response(body, status, headers)
