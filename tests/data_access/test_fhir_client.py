"""A FHIR server that answers one byte at a time: each fetch ends at the call's budget (its
socket closed, its thread free), and one such server cannot starve the fetches to the others."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.builders import PATIENT_VIEW
from test_gather import (  # noqa: F401  (fixtures)
    BUDGET,
    MARGIN,
    body_for,
    make_app,
    missing_reasons,
    post,
    red,
    seen,
)

from cds_service.data_access.fhir_client import POOL_SIZE

DRIP_EVERY_S = 0.2


class DrippingServer:
    """Accepts every connection and sends a never-ending status line and header, byte by byte."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}/fhir"
        self.open = 0
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.open += 1
                self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        payload = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100_000
        try:
            for byte in payload:
                conn.sendall(bytes([byte]))
                time.sleep(DRIP_EVERY_S)
        except OSError:
            pass  # the service closed the connection
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dripping() -> Iterator[DrippingServer]:
    server = DrippingServer()
    try:
        yield server
    finally:
        server.close()


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_dripping_server_is_cut_off_at_the_budget(tmp_path, red, dripping, kb):  # noqa: F811
    client = make_app(tmp_path).test_client()
    started = time.monotonic()
    response = post(client, body_for(red, dripping.base, "t"))
    assert time.monotonic() - started < BUDGET + MARGIN
    reasons = missing_reasons(response)
    assert all("did not answer within the time budget" in r for r in reasons.values()), reasons
    # one fetch per prefetch key the patient-view service asks for, no retry
    assert dripping.accepted == len(kb.services[PATIENT_VIEW].prefetch)
    # the service closed each connection: no thread of its pool is still reading the drip
    assert wait_until(lambda: dripping.open == 0, timeout=2 * DRIP_EVERY_S + 1.0), dripping.open


def test_a_dripping_server_cannot_starve_another_clients_server(
    tmp_path,
    red,  # noqa: F811
    dripping,
    seen,  # noqa: F811
):
    app = make_app(tmp_path)
    slow_calls = POOL_SIZE  # far more fetches than the pool has threads
    with ThreadPoolExecutor(slow_calls) as callers:
        slow = [
            callers.submit(post, app.test_client(), body_for(red, dripping.base, "t"))
            for _ in range(slow_calls)
        ]
        assert wait_until(lambda: dripping.accepted >= POOL_SIZE // 2, timeout=BUDGET)
        good = post(app.test_client(), body_for(red, seen.base, seen.token))
        assert good.status_code == 200, good.get_data(as_text=True)
        assert good.get_json()["cards"][0]["indicator"] == "critical"
        assert all(call.result().status_code == 412 for call in slow)
    # once the budget is over every thread is free again
    assert wait_until(lambda: dripping.open == 0, timeout=2 * DRIP_EVERY_S + 1.0)
    assert post(app.test_client(), body_for(red, seen.base, seen.token)).status_code == 200
