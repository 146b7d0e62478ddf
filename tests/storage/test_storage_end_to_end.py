"""End to end on granian with two worker processes, on both databases: hundreds of concurrent
feedback posts stored exactly once, a restart that loses nothing, and a database that disappears
mid-run while cards keep flowing."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sqlalchemy import select
from support.serving import red_flag_request, serving

from cds_service.storage.models import Feedback, ServiceCall

SERVICE = "back-spasm-patient-view"
#: over HTTP on loopback a call takes milliseconds; a database wait would cost seconds
HTTP_CALL_BOUND_S = 1.0


def item(n: int, card: str | None = None) -> dict[str, Any]:
    return {
        "card": card or f"card-{n % 40}",
        "outcome": "overridden",
        "overrideReason": {"userComment": f"comment {n}"},
        "outcomeTimestamp": f"2026-11-25T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
    }


def key(row: Any) -> tuple[str, str]:
    return (row["card"], row["overrideReason"]["userComment"])


def batches_of(items: list[dict[str, Any]], seed: int) -> list[list[dict[str, Any]]]:
    """Every item twice, shuffled, in batches of 1 or 2."""
    rng = random.Random(seed)
    sends = items * 2
    rng.shuffle(sends)
    out = []
    while sends:
        size = rng.randint(1, 2)
        out.append(sends[:size])
        sends = sends[size:]
    return out


def concurrently(url: str, batches: list[list[dict[str, Any]]], threads: int = 8) -> list[int]:
    local = threading.local()

    def send(batch: list[dict[str, Any]]) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(
            f"{url}/cds-services/{SERVICE}/feedback", json={"feedback": batch}, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, batches))


def stored(database) -> list[tuple[str, str]]:
    rows = database.rows(select(Feedback.card_uuid, Feedback.user_comment))
    return [(r.card_uuid, r.user_comment) for r in rows]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_concurrent_feedback_on_two_workers_and_a_restart(migrated, tmp_path):
    first = [item(n) for n in range(300)]
    body = red_flag_request()
    with serving(migrated.url, tmp_path / "run1") as url:
        cards = [
            requests.post(f"{url}/cds-services/{SERVICE}", json=body, timeout=10).json()["cards"]
            for _ in range(10)
        ]
        assert all(c and c[0]["indicator"] == "critical" for c in cards)
        first += [item(1000 + i, c[0]["uuid"]) for i, c in enumerate(cards)]
        statuses = concurrently(url, batches_of(first, seed=1))
        assert set(statuses) == {200} and len(statuses) > 400
    # stopped gracefully: every acknowledged item is there, and the workers wrote their audit
    assert sorted(stored(migrated)) == sorted(key(i) for i in first)
    assert migrated.count(ServiceCall) == 10
    second = [item(n) for n in range(300, 400)]
    resent = first[:50]
    with serving(migrated.url, tmp_path / "run2") as url:
        assert set(concurrently(url, batches_of(second + resent, seed=2))) == {200}
    rows = stored(migrated)
    assert len(rows) == len(set(rows)) == 410
    assert set(rows) == {key(i) for i in first + second}
    matched = migrated.count(Feedback, Feedback.card_matched.is_(True))
    assert matched == 10


def test_a_database_that_disappears_mid_run(migrated, tmp_path):
    """Cards keep flowing, feedback answers 503 while it is gone, and once it is back nothing
    acknowledged is missing and every call is in the audit trail."""
    body = red_flag_request()
    calls: list[tuple[int, float, bool]] = []  # status, seconds, database gone
    acknowledged: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    gone = threading.Event()
    with serving(migrated.url, tmp_path / "run") as url:
        session = requests.Session()

        def service_call() -> None:
            started = time.perf_counter()
            response = session.post(f"{url}/cds-services/{SERVICE}", json=body, timeout=30)
            assert response.json()["cards"], response.text
            calls.append((response.status_code, time.perf_counter() - started, gone.is_set()))

        def feedback(n: int) -> None:
            sent = item(n, str(uuid.uuid4()))
            response = session.post(
                f"{url}/cds-services/{SERVICE}/feedback", json={"feedback": [sent]}, timeout=30
            )
            assert response.status_code in (200, 503), response.text
            (acknowledged if response.status_code == 200 else refused).append(sent)

        for n in range(10):
            service_call()
            feedback(n)
        migrated.disappear()
        gone.set()
        try:
            for n in range(10, 25):
                service_call()
                feedback(n)
        finally:
            migrated.come_back()
            gone.clear()
        for n in range(25, 35):
            service_call()
            feedback(n)
        for sent in refused:  # the client sends again what was not acknowledged
            response = session.post(
                f"{url}/cds-services/{SERVICE}/feedback", json={"feedback": [sent]}, timeout=30
            )
            assert response.status_code == 200
        assert wait_for(lambda: migrated.count(ServiceCall) == len(calls)), (
            migrated.count(ServiceCall),
            len(calls),
        )
    assert {status for status, _, _ in calls} == {200}
    assert max(seconds for _, seconds, down in calls if down) < HTTP_CALL_BOUND_S
    assert len(refused) >= 10, "feedback must not be acknowledged while the database is gone"
    rows = stored(migrated)
    assert len(rows) == len(set(rows)) == 35
    assert set(rows) == {key(i) for i in acknowledged + refused}
