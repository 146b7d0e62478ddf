"""A hung PostgreSQL (a proxy that stops forwarding; the kernel still acknowledges packets):
every wait is bounded by CDS_DATABASE_TIMEOUT_SECONDS, the JWT replay check and feedback answer
503, service calls and /healthz go on unhindered, and feedback resent later is stored once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import conftest
import pytest
from conftest import TEST_AUDIT_KEY, service_state
from support.builders import FIXED_NOW
from support.calls import CALL_BOUND_S, URL, call
from support.jwt_clients import ISSUER, LOCAL, bearer, claims, generate_key, sign
from support.scratch_db import scratch_database
from support.tcp_proxy import TcpProxy

from cds_service import Settings, create_app
from cds_service.storage.database import upgrade
from cds_service.storage.models import Feedback

WAIT_S = 1.0
#: a wait bounded by WAIT_S: a ping, a statement and a commit can each take it, plus a loaded
#: machine's slack; an unbounded wait took 25-30 s
BOUND_S = 4 * WAIT_S + 2


@pytest.fixture
def hung(tmp_path: Path) -> Iterator[conftest.TestDatabase]:
    """A migrated scratch PostgreSQL database behind a proxy the test can freeze."""
    for direct in scratch_database():
        proxy = TcpProxy((direct.host or "127.0.0.1", direct.port or 5432)).start()
        proxied = direct.set(host="127.0.0.1", port=proxy.port)
        url = proxied.render_as_string(hide_password=False)
        upgrade(url)
        try:
            yield conftest.TestDatabase(
                "postgresql", url, direct.render_as_string(hide_password=False), proxy=proxy
            )
        finally:
            proxy.thaw()
            proxy.close()


def settings(tmp_path: Path, url: str, **changes) -> Settings:
    return Settings(
        instance_path=tmp_path / "instance",
        database_url=url,
        database_timeout_seconds=WAIT_S,
        audit_key=TEST_AUDIT_KEY,
        **changes,
    )


def timed(send) -> tuple[object, float]:
    started = time.monotonic()
    response = send()
    return response, time.monotonic() - started


def feedback_body(card: str) -> dict:
    item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}
    return {"feedback": [item]}


def test_feedback_answers_503_in_bound_and_a_resend_is_stored_once(hung, tmp_path):
    app = create_app(
        settings(tmp_path, hung.url, allow_unauthenticated=True), clock=lambda: FIXED_NOW
    )
    client = app.test_client()
    card = "5f1e7a0c-0000-4000-8000-000000000001"
    feedback_url = f"{URL}/feedback"
    assert client.post(feedback_url, json=feedback_body(card[:-1] + "0")).status_code == 200
    hung.proxy.freeze()
    try:
        response, elapsed = timed(lambda: client.post(feedback_url, json=feedback_body(card)))
        assert response.status_code == 503 and elapsed < BOUND_S, elapsed
        assert response.headers["Retry-After"]
        reason = response.get_json()["issue"][0]["diagnostics"]
        assert "nothing was stored" not in reason  # a lost commit answer may have stored it
        assert "resending is safe" in reason and "stored once" in reason
        # the clinician's calls and the liveness probe do not wait for the database
        for _ in range(3):
            answer, took = call(client)
            assert answer.status_code == 200 and took < CALL_BOUND_S
            health, took = timed(lambda: client.get("/healthz"))
            assert health.status_code == 200 and took < CALL_BOUND_S
    finally:
        hung.proxy.thaw()
    assert client.post(feedback_url, json=feedback_body(card)).status_code == 200
    assert client.post(feedback_url, json=feedback_body(card)).status_code == 200
    assert hung.count(Feedback, Feedback.card_uuid == card) == 1
    service_state(app).audit.writer.close(timeout=10)
    service_state(app).engine.dispose()


def test_a_replay_check_that_cannot_finish_answers_503_in_bound(hung, tmp_path, auth_app):
    key = generate_key("P-256")
    app = auth_app(
        [{"issuer": ISSUER, "jwks": key.jwks()}],
        database_url=hung.url,
        database_timeout_seconds=WAIT_S,
    )
    client = app.test_client()

    def discovery():
        token = sign(key, "ES256", claims(LOCAL + "/cds-services"))
        return client.get("/cds-services", headers=bearer(token), base_url=LOCAL)

    assert discovery().status_code == 200
    hung.proxy.freeze()
    try:
        for _ in range(2):  # a pooled connection, then a fresh one
            response, elapsed = timed(discovery)
            assert response.status_code == 503 and elapsed < BOUND_S, elapsed
            assert response.headers["Retry-After"]
            health, took = timed(lambda: client.get("/healthz"))
            assert health.status_code == 200 and took < CALL_BOUND_S
    finally:
        hung.proxy.thaw()
    assert discovery().status_code == 200  # the same app goes on once the database answers
    service_state(app).audit.writer.close(timeout=10)
    service_state(app).engine.dispose()
