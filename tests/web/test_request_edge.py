"""The request edge's shortcuts answer as the plain ways do: the buffered body, the header sizes."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from flask import Flask
from werkzeug.datastructures import EnvironHeaders

from cds_service.web.body import BUFFERED_BODY, BodyError, read_json_body
from cds_service.web.buffered import BufferedWSGI
from cds_service.web.security import _header_sizes

app = Flask(__name__)


@dataclass
class Scope:
    """What the buffered server reads of a granian request scope."""

    headers: dict[str, str]
    method: str = "POST"
    path: str = "/cds-services/x"
    query_string: str = ""
    scheme: str = "http"
    server: str = "127.0.0.1:8000"
    client: str = "127.0.0.1:5000"
    http_version: str = "1.1"


def _read(environ: dict) -> object:
    with app.request_context(environ):
        try:
            return read_json_body(1000, 8)
        except BodyError as exc:
            return (exc.status, exc.code, exc.reason)


@pytest.mark.parametrize(
    "body", [b'{"a": [1, 2]}', b"", b"  ", b"[[[[[[[[[1]]]]]]]]]", b"{", b"x" * 1001, b"1"]
)
def test_the_buffered_body_reads_as_the_input_stream_does(body: bytes) -> None:
    server = BufferedWSGI(app, max_body_bytes=1000, body_timeout_s=1, threads=1)
    scope = Scope({"content-type": "application/json", "content-length": str(len(body))})
    given = body if len(body) <= 1000 else b""  # a body over the limit is not read
    environ = server._environ(scope, given, len(body))
    assert (BUFFERED_BODY in environ) == (len(body) <= 1000)
    streamed = dict(environ)
    streamed.pop(BUFFERED_BODY, None)
    assert _read(environ) == _read(streamed)


def test_the_buffered_body_is_taken_once() -> None:
    with app.test_request_context(
        method="POST",
        data=b"",
        content_type="application/json",
        environ_overrides={BUFFERED_BODY: b"{}"},
    ) as context:
        assert read_json_body(1000, 8) == {}
        assert BUFFERED_BODY not in context.request.environ


def test_header_sizes_are_those_of_the_listed_headers() -> None:
    rng = random.Random(5)
    letters = "ABZ_ßÿµǆ-x9 "
    known = ["CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"]
    known += ["HTTP_", "HTTP_HOST", "wsgi.input", "PATH_INFO", "HTTP_X_ß", "HTTP_ǆ"]
    for _ in range(3000):
        environ = {}
        for _ in range(rng.randint(0, 8)):
            spelled = "".join(rng.choice(letters) for _ in range(rng.randint(0, 6)))
            key = rng.choice(known) if rng.random() < 0.5 else f"HTTP_{spelled}"
            environ[key] = "".join(rng.choice("ab ß") for _ in range(rng.randint(0, 4)))
        listed = [(len(name), len(value)) for name, value in EnvironHeaders(environ).items()]
        assert _header_sizes(environ) == listed
