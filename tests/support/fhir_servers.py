"""Real FHIR servers on loopback for the tests (a pytest plugin, loaded by conftest.py).

- `fhir_server`: the Node FHIR R4 server of tests/fhir-server (Medplum's FHIR router over its
  in-memory repository), which requires a bearer token; `open_fhir_server`: the same, open.
  Node is required: without it these fixtures fail, they never skip.
- `stub_server`: a small Python HTTP server whose answers a test scripts (slow, wrong, hostile).
- `silent_port`: a listening socket that never accepts, to prove that no connection was tried.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

SERVER_DIR = Path(__file__).resolve().parent.parent / "fhir-server"
START_TIMEOUT = 30.0


@dataclass
class NodeFhirServer:
    """A running Node FHIR server: its base URL, the token it wants, and test helpers."""

    base: str
    token: str | None
    process: subprocess.Popen[bytes]
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def origin(self) -> str:
        return self.base.removesuffix("/fhir")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; the transaction-response."""
        response = self.http.post(
            self.base,
            json=bundle,
            headers={**self.headers(), "Content-Type": "application/fhir+json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.base}/{path}", headers=self.headers(), timeout=10)

    def requests_seen(self) -> list[dict[str, Any]]:
        """What the server received since the last `forget_requests`."""
        return self.http.get(f"{self.origin}/__admin/requests", timeout=10).json()

    def forget_requests(self) -> None:
        self.http.delete(f"{self.origin}/__admin/requests", timeout=10).raise_for_status()


def _start_node(token: str | None, page_size: int = 20) -> NodeFhirServer:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: Node 20+ is required for the FHIR server tests")
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        pytest.fail(f"run `npm ci` in {SERVER_DIR} (scripts/test does it)")
    env = {
        **os.environ,
        "FHIR_SERVER_TOKEN": token or "",
        "FHIR_SERVER_PORT": "0",
        "FHIR_PAGE_SIZE": str(page_size),
    }
    process = subprocess.Popen(
        [node, "server.mjs"],
        cwd=SERVER_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    while time.monotonic() < deadline and not line.startswith(b"listening "):
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            pytest.fail(f"the Node FHIR server exited with {process.returncode}")
    if not line.startswith(b"listening "):
        process.kill()
        pytest.fail("the Node FHIR server did not start")
    return NodeFhirServer(line.split()[1].decode(), token, process)


def _stop(server: NodeFhirServer) -> None:
    server.http.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.process.stdout:
        server.process.stdout.close()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[NodeFhirServer]:
    """The Node FHIR server, wanting a bearer token."""
    server = _start_node(f"test-token-{secrets.token_hex(12)}")
    try:
        yield server
    finally:
        _stop(server)


@pytest.fixture(scope="session")
def open_fhir_server() -> Iterator[NodeFhirServer]:
    """The Node FHIR server without authorization, as the public CDS Hooks Sandbox uses."""
    server = _start_node(None)
    try:
        yield server
    finally:
        _stop(server)


# ------------------------------------------------------------------------------ stub server

#: (status, headers, body) for a request path (with query); the body is bytes or JSON.
Reply = tuple[int, dict[str, str], Any]


@dataclass
class StubServer:
    """A loopback HTTP server whose answers the test decides; it records what it was asked."""

    base: str
    reply: Callable[[str], Reply] = lambda path: (404, {}, {"resourceType": "OperationOutcome"})
    delay: float = 0.0
    seen: list[dict[str, str]] = field(default_factory=list)


def _handler(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            stub.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            if stub.delay:
                time.sleep(stub.delay)
            status, headers, body = stub.reply(self.path)
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            with contextlib.suppress(ConnectionError):  # the client gave up waiting
                self.send_response(status)
                headers = {"Content-Type": "application/fhir+json", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (the service gave up waiting) is no error here."""


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    stub = StubServer(base="")
    server = _QuietServer(("127.0.0.1", 0), _handler(stub))
    stub.base = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A listening loopback socket that accepts nothing: any connection would wait in its queue."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def connections_waiting(sock: socket.socket) -> int:
    """How many connections reached a `silent_port` (accepting, and closing, each one)."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1
