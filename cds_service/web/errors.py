"""Every error answer is JSON (an OperationOutcome); never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .responses import error_response

log = logging.getLogger(__name__)

#: HTTP status -> FHIR issue-type code
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {}
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    reason = exc.description or exc.name
    return error_response(status, _ISSUE_CODES.get(status, "exception"), reason, headers=headers)


def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error while answering a request")
    return error_response(500, "exception", "internal error; the event was logged")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
