"""Slow clients cannot take the service down: while 200 loopback sockets dribble their headers
for 30 s, an ordinary service call and /healthz are answered within a second, every time."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from served import Served, serve, upgrade_database
from test_server import sample_request

SLOW_SOCKETS = 200
DRIBBLE_FOR_S = 30.0
ANSWER_WITHIN_S = 1.0
SERVICE = "/cds-services/back-spasm-patient-view"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    instance = tmp_path_factory.mktemp("instance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_INSTANCE_PATH"] = str(instance)
    upgrade_database(env)
    server = serve(env, instance / "server.log", "--allow-unauthenticated", workers=2)
    try:
        yield server
    finally:
        server.stop()


class Dribblers:
    """Sockets that send a request line, then one header line each second, never the end."""

    def __init__(self, port: int, count: int):
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _dribble(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_slow_header_senders_block_neither_calls_nor_healthz(served):
    port = int(served.url.rsplit(":", 1)[1])
    body = sample_request("ces-new-urinary-retention")
    dribblers = Dribblers(port, SLOW_SOCKETS)
    slowest = {"call": 0.0, "healthz": 0.0}
    rounds = 0
    try:
        end = time.monotonic() + DRIBBLE_FOR_S
        while time.monotonic() < end:
            started = time.monotonic()
            call = requests.post(served.url + SERVICE, json=body, timeout=10)
            slowest["call"] = max(slowest["call"], time.monotonic() - started)
            assert call.status_code == 200 and call.json()["cards"], call.text
            started = time.monotonic()
            health = requests.get(served.url + "/healthz", timeout=10)
            slowest["healthz"] = max(slowest["healthz"], time.monotonic() - started)
            assert health.status_code == 200
            rounds += 1
            time.sleep(0.5)
    finally:
        dribblers.close()
    assert rounds >= 10
    assert max(slowest.values()) < ANSWER_WITHIN_S, slowest
