"""Run the WSGI application behind granian's RSGI interface, with each body read in full first.

granian reads request headers in its event loop; over its WSGI interface, though, a worker
thread reads the body, so a client that sends its body a byte at a time would hold a thread.
Here the event loop reads the whole body (up to `max_body_bytes`, within `body_timeout_s`)
before a thread of the worker's pool runs the Flask application on it: a slow client holds a
socket and a coroutine, never a thread. A body that does not arrive in time answers 408; one
larger than the limit is not read, and the application answers its 413.

The access log (`cds_service.access`, INFO) has one line per request: method, path, status and
milliseconds. The query string is never logged (it may carry a token), and the path is shown
percent-encoded, so that no caller can write control characters into the log.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from ..core.outcome import operation_outcome
from .body import BUFFERED_BODY

access_log = logging.getLogger("cds_service.access")
WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _split_host(value: str, default_port: str) -> tuple[str, str]:
    host, sep, port = value.rpartition(":")
    return (host, port) if sep and port.isdigit() else (value, default_port)


class BufferedWSGI:
    """An RSGI application that buffers each request body, then runs `wsgi_app` on a thread."""

    def __init__(
        self, wsgi_app: WSGIApp, *, max_body_bytes: int, body_timeout_s: float, threads: int
    ):
        self.wsgi_app = wsgi_app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="call")
        return self._executor

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        started = time.perf_counter()
        status = await self._answer(scope, protocol)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d %.1fms",
                scope.method,
                quote(scope.path, safe="/:@-._~!$&'()*+,;="),
                status,
                (time.perf_counter() - started) * 1000,
            )

    async def _answer(self, scope: Any, protocol: Any) -> int:
        declared = scope.headers.get("content-length")
        try:
            async with asyncio.timeout(self.body_timeout_s):  # no task of its own, unlike wait_for
                body, length = await self._read_body(protocol, declared)
        except TimeoutError:
            protocol.response_bytes(408, *self._slow_body())
            return 408
        environ = self._environ(scope, body, length)
        loop = asyncio.get_running_loop()
        status, headers, payload = await loop.run_in_executor(self._pool(), self._call, environ)
        protocol.response_bytes(status, headers, payload)
        return status

    async def _read_body(self, protocol: Any, declared: str | None) -> tuple[bytes, int | None]:
        """The body and its length; past the limit, nothing (the length says how much)."""
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_body_bytes:
                return b"", int(declared)
            body = await protocol()  # within the limit: read in one go
            return body, len(body)
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", size
            chunks.append(chunk)
        if not size and declared is None:
            return b"", None
        return b"".join(chunks), size

    def _slow_body(self) -> tuple[list[tuple[str, str]], bytes]:
        reason = f"the request body did not arrive within {self.body_timeout_s:g} s"
        body = json.dumps(operation_outcome("timeout", reason)).encode()
        return [("content-type", "application/json"), ("connection", "close")], body

    def _environ(self, scope: Any, body: bytes, length: int | None) -> dict[str, Any]:
        scheme = scope.scheme
        server, port = _split_host(scope.server, "443" if scheme == "https" else "80")
        client, _ = _split_host(scope.client, "")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope.method,
            "SCRIPT_NAME": "",
            # granian gives the path percent-decoded; WSGI wants its UTF-8 bytes as latin-1
            "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
            "QUERY_STRING": scope.query_string,
            "RAW_URI": scope.path + (f"?{scope.query_string}" if scope.query_string else ""),
            "SERVER_NAME": server,
            "SERVER_PORT": port,
            "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": client,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,  # the whole body, chunked or not, is in the input
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for name, value in scope.headers.items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        environ.pop("CONTENT_LENGTH", None)
        if length is not None:  # read (or refused): its length is known, however it was sent
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(length)
        if length is None or len(body) == length:  # read in full: the application takes it as is
            environ[BUFFERED_BODY] = body
        return environ

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = headers

        result = self.wsgi_app(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return answer["status"], answer["headers"], payload
