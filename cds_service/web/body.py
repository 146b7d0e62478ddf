"""Read a JSON request body within the service's limits, with a clear 4xx for each breach."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import orjson
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

JSON_MIMETYPES = frozenset({"application/json", "application/fhir+json"})
_ESCAPES = re.compile(rb"\\.", re.DOTALL)
_DEPTH_STEP = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
#: Brackets of both kinds as braces: depth counts them alike.
_ONE_KIND = bytes.maketrans(b"[]", b"{}")
_PEEL_PASSES = 32
#: The WSGI environ key under which a server that read the whole body first hands it over as is.
BUFFERED_BODY = "cds_service.body"


class BodyError(Exception):
    """The body cannot be read; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def json_depth(raw: bytes) -> int:
    """The deepest nesting of objects and arrays in a JSON text (C-speed scan).

    Escapes are dropped first, then everything but quotes and brackets; what lies between
    quotes is string content, so only the brackets outside them count.
    """
    if b"\\" in raw:
        raw = _ESCAPES.sub(b"", raw)
    structure = raw.translate(None, _NOT_STRUCTURE)
    # Two quotes in a row close one string and open the next (or hold an empty one): dropping
    # them leaves every other byte as much inside or outside a string as it was.
    structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[0::2])
    if not structure:
        return 0
    return _peeled_depth(structure) or max(accumulate(map(_DEPTH_STEP.__getitem__, structure)))


def _peeled_depth(brackets: bytes) -> int | None:
    """The depth of well-nested brackets: each pass peels the innermost pairs, so the number of
    passes that empty the text is its depth. None when it is not well nested, or deeper than
    `_PEEL_PASSES` (the caller then counts bracket by bracket)."""
    text = brackets.translate(_ONE_KIND)
    for depth in range(1, _PEEL_PASSES + 1):
        peeled = text.replace(b"{}", b"")
        if not peeled:
            return depth
        if len(peeled) == len(text):
            return None
        text = peeled
    return None


def read_json_body(max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body of the current request."""
    if request.mimetype not in JSON_MIMETYPES:
        shown = request.mimetype or "none"
        raise BodyError(415, "not-supported", f"Content-Type must be application/json, not {shown}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyError(413, "too-costly", f"body larger than the limit of {max_bytes} bytes")
    raw = _raw_body(max_bytes)
    if len(raw) > max_bytes:
        raise BodyError(413, "too-costly", f"body larger than the limit of {max_bytes} bytes")
    if not raw.strip():
        raise BodyError(400, "invalid", "the request body is empty")
    if json_depth(raw) > max_depth:
        raise BodyError(400, "too-costly", f"JSON nested deeper than the limit of {max_depth}")
    return parse_json(raw)


def _raw_body(max_bytes: int) -> bytes:
    """The request body: the server's buffered bytes without a copy, else read from the input."""
    buffered = request.environ.pop(BUFFERED_BODY, None)
    if buffered is not None:
        return buffered
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise BodyError(
            413, "too-costly", f"body larger than the limit of {max_bytes} bytes"
        ) from exc


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`: orjson reads UTF-8 JSON fast; whatever it refuses (another
    encoding, NaN, an integer beyond 64 bits) the standard library reads, or explains."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BodyError(
            400, "invalid", f"the request body is not valid JSON: {_where(exc)}"
        ) from exc


def _where(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return type(exc).__name__
