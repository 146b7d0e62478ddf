"""Slow clients cannot take the service down: while 200 loopback sockets dribble their headers
(and 50 more their bodies) for 30 s, an ordinary service call and /healthz are answered within a
second, every time. A socket the server cuts off (it allows 10 s for headers and for a body)
connects again and starts over, as a patient attacker would."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from support.served import Served, serve, upgrade_database
from test_server import sample_request

SLOW_SOCKETS = 200
SLOW_BODIES = 50
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
    """Sockets that send a request's start, then one more line or byte each second, never the
    end; one that is cut off connects again."""

    def __init__(self, port: int, count: int, *, body: bool):
        self.port = port
        self.body = body
        self.sockets = [self._connect() for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        start = f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if self.body:
            start += "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        sock.sendall(start.encode())
        return sock

    def _dribble(self) -> None:
        piece = b" " if self.body else b"X-Slow: 1\r\n"
        while not self._stop.wait(1.0):
            for i, sock in enumerate(self.sockets):
                try:
                    sock.sendall(piece)
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        self.sockets[i] = self._connect()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_slow_senders_block_neither_calls_nor_healthz(served):
    port = int(served.url.rsplit(":", 1)[1])
    body = sample_request("ces-new-urinary-retention")
    dribblers = [Dribblers(port, SLOW_SOCKETS, body=False), Dribblers(port, SLOW_BODIES, body=True)]
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
        for group in dribblers:
            group.close()
    assert rounds >= 10
    assert max(slowest.values()) < ANSWER_WITHIN_S, slowest
