"""Feedback on both databases: 200 only once stored, stored once, 400 and 503 with reasons."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import flush, service_state
from sqlalchemy import Engine, event, select
from support.builders import FIXED_NOW, PATIENT_VIEW
from support.calls import call

from cds_service import Settings, create_app
from cds_service.core.audit import AuditRecord, CallFacts, audit_record
from cds_service.core.caller import Caller
from cds_service.core.orders import suggestion_uuid
from cds_service.storage.audit_trail import write_records
from cds_service.storage.database import upgrade
from cds_service.storage.models import Feedback
from cds_service.web.caller import set_caller

FEEDBACK = f"/cds-services/{PATIENT_VIEW}/feedback"
REASON_SYSTEM = "https://back-spasm-cds.org/fhir/CodeSystem/override-reason"


def item(card: str, n: int = 0, **extra: Any) -> dict[str, Any]:
    """The n-th distinct feedback item on a card (they differ by timestamp)."""
    return {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {"reason": {"system": REASON_SYSTEM, "code": "already-evaluated"}},
        "outcomeTimestamp": f"2026-11-25T12:{n // 60:02d}:{n % 60:02d}Z",
        **extra,
    }


def post(client, items: list[dict[str, Any]]) -> Any:
    return client.post(FEEDBACK, json={"feedback": items})


def test_feedback_is_stored_once_however_often_it_comes(make_app, migrated):
    client = make_app().test_client()
    card = str(uuid.uuid4())
    first, second = item(card, 1), item(card, 2)
    for batch in ([first, second, first], [second], [first, second]):
        response = post(client, batch)
        assert response.status_code == 200 and response.get_json() == {}
    assert migrated.count(Feedback) == 2
    sandbox_style = {**first, "outcomeTimestamp": "2026-11-25T13:00:01.000+01:00"}
    assert post(client, [sandbox_style]).status_code == 200  # the same instant, written otherwise
    assert migrated.count(Feedback) == 2


def test_what_is_stored(make_app, migrated):
    app = make_app()
    app.before_request(lambda: set_caller(Caller("https://ehr.example", jti="jti-1", tenant="t1")))
    client = app.test_client()
    # suggestion uuids as the service derives them for card c-1 (not recorded: no such call)
    s1, s2 = sorted(suggestion_uuid("c-1", x) for x in ("repeat-potassium", "repeat-calcium"))
    accepted = {
        "card": "c-1",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": s2}, {"id": s1}],
        "outcomeTimestamp": "2026-11-25T12:00:00.25Z",
    }
    commented = item("c-2", overrideReason={"userComment": "seen by neurosurgery"})
    assert post(client, [accepted, commented]).status_code == 200
    rows = {r.card_uuid: r for r in migrated.rows(select(Feedback))}
    assert rows["c-1"].accepted_suggestions == [s1, s2]
    assert rows["c-1"].override_code is None
    assert rows["c-2"].user_comment == "seen by neurosurgery"
    assert {(r.client_issuer, r.client_tenant, r.client_jti) for r in rows.values()} == {
        ("https://ehr.example", "t1", "jti-1")
    }
    assert {r.service_id for r in rows.values()} == {PATIENT_VIEW}


def test_feedback_on_a_card_we_never_issued_is_kept_unmatched(make_app, migrated):
    app = make_app()
    client = app.test_client()
    response, _ = call(client)
    issued = response.get_json()["cards"][0]["uuid"]
    flush(app)
    assert post(client, [item(issued), item("never-issued")]).status_code == 200
    matched = dict(migrated.rows(select(Feedback.card_uuid, Feedback.card_matched)))
    assert matched == {issued: True, "never-issued": False}


def record_issuing(card: str) -> AuditRecord:
    """The audit record of a call that issued this one card."""
    facts = CallFacts("call-late", FIXED_NOW, PATIENT_VIEW, 200, 5.0, "v1", "patient-view")
    issued = {
        "uuid": card,
        "call_id": "call-late",
        "position": 0,
        "theme": "t",
        "indicator": "info",
    }
    return AuditRecord(audit_record(facts).call, (issued,))


def test_feedback_that_overtakes_its_cards_record_is_matched_when_it_arrives(make_app, migrated):
    client = make_app().test_client()
    card = str(uuid.uuid4())
    assert post(client, [item(card)]).status_code == 200
    late = record_issuing(card)
    engine = migrated.engine()
    try:
        write_records(engine, [late])
        write_records(engine, [late])  # a retried batch is stored once
    finally:
        engine.dispose()
    assert migrated.rows(select(Feedback.card_matched)) == [(True,)]


def just_before_its_first_commit(engine: Engine, action: Callable[[], None]) -> None:
    """Run the action once, as the engine's first transaction is about to commit."""
    pending = [action]

    def run_once(_connection: Any) -> None:
        while pending:
            pending.pop()()

    event.listen(engine, "commit", run_once)


# Two workers can write feedback and its card's record at the same moment; on PostgreSQL
# neither transaction sees the other's uncommitted row (SQLite lets one writer at a time).


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_feedback_stored_while_its_cards_record_is_being_written_is_matched(make_app, migrated):
    client = make_app().test_client()
    card = str(uuid.uuid4())

    def feedback() -> None:
        assert post(client, [item(card)]).status_code == 200

    engine = migrated.engine()
    try:
        just_before_its_first_commit(engine, feedback)
        write_records(engine, [record_issuing(card)])
    finally:
        engine.dispose()
    assert migrated.rows(select(Feedback.card_matched)) == [(True,)]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_cards_record_written_while_its_feedback_is_being_stored_is_matched(make_app, migrated):
    app = make_app()
    card = str(uuid.uuid4())
    engine = migrated.engine()
    try:
        just_before_its_first_commit(
            service_state(app).engine, lambda: write_records(engine, [record_issuing(card)])
        )
        assert post(app.test_client(), [item(card)]).status_code == 200
    finally:
        engine.dispose()
    assert migrated.rows(select(Feedback.card_matched)) == [(True,)]


def test_malformed_feedback_is_400_names_the_item_and_stores_nothing(make_app, migrated):
    client = make_app().test_client()
    bad = {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-25T12:00:00Z"}
    response = post(client, [item("c-ok"), bad])
    assert response.status_code == 400
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in body["issue"]] == [["feedback[1].acceptedSuggestions"]]
    assert "required" in body["issue"][0]["diagnostics"]
    assert migrated.count(Feedback) == 0


def test_other_errors(make_app):
    client = make_app().test_client()
    assert client.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404
    response = client.post(FEEDBACK, data="feedback", content_type="text/plain")
    assert response.status_code == 415
    assert client.get(FEEDBACK).status_code == 405


def test_a_database_that_cannot_store_answers_503_and_nothing_acknowledged_is_lost(
    make_app, migrated
):
    client = make_app().test_client()
    acknowledged = [item("c", 1)]
    assert post(client, acknowledged).status_code == 200
    migrated.disappear()
    try:
        response = post(client, [item("c", 2), item("c", 1)])
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.get_json()["issue"][0]["code"] == "transient"
        cards, _ = call(client)
        assert cards.status_code == 200 and cards.get_json()["cards"]  # cards still go out
    finally:
        migrated.come_back()
    assert migrated.count(Feedback) == 1
    assert post(client, [item("c", 2), item("c", 1)]).status_code == 200  # the client resends
    assert migrated.count(Feedback) == 2


def test_concurrent_feedback_is_stored_exactly_once(make_app, migrated):
    """400 posts from 16 threads: 200 distinct items, each sent twice, in batches of 1 to 3."""
    app = make_app()
    items = [item(f"card-{n % 50}", n) for n in range(200)]
    sends = items * 2
    random.Random(6).shuffle(sends)
    batches: list[list[dict[str, Any]]] = []
    while sends:
        size = random.Random(len(sends)).randint(1, 3)
        batches.append(sends[:size])
        sends = sends[size:]
    local = threading.local()

    def send(batch: list[dict[str, Any]]) -> int:
        if not hasattr(local, "client"):
            local.client = app.test_client()
        return post(local.client, batch).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, batches))
    assert set(statuses) == {200}
    stored = migrated.rows(select(Feedback.card_uuid, Feedback.outcome_timestamp))
    assert len(stored) == 200
    assert len(set(stored)) == 200


def test_a_deleted_sqlite_file_is_never_written_to_behind_the_clients_back(tmp_path):
    """A pooled connection to a deleted file would commit into nothing: it is discarded, and
    the client hears 503, never 200."""
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    upgrade(url)
    settings = Settings(instance_path=tmp_path, database_url=url, allow_unauthenticated=True)
    client = create_app(settings, clock=lambda: FIXED_NOW).test_client()
    assert post(client, [item("c", 1)]).status_code == 200  # a pooled connection is open now
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"cds.sqlite3{suffix}").unlink(missing_ok=True)
    assert post(client, [item("c", 2)]).status_code == 503
