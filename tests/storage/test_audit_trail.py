"""The audit trail on both databases: what a call leaves behind, and that a slow or dead database
never slows or fails the clinician's call."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from conftest import TEST_AUDIT_KEY, flush, service_state
from sqlalchemy import insert, select, text
from support.builders import FIXED_NOW, PATIENT_ID, PATIENT_VIEW
from support.calls import CALL_BOUND_S, URL, call, red_flag_body

from cds_service.core.audit import patient_key
from cds_service.core.caller import Caller
from cds_service.storage.audit_trail import BATCH_SIZE
from cds_service.storage.models import EvidenceRef, FiredRule, IssuedCard, ServiceCall
from cds_service.storage.report import build_report, render_html
from cds_service.web import audit as web_audit
from cds_service.web.caller import set_caller


def test_a_card_is_traced_to_its_rule_and_evidence(make_app, migrated):
    app = make_app()
    body = red_flag_body()
    response, _ = call(app.test_client(), body)
    (card,) = response.get_json()["cards"]
    flush(app)
    (row,) = migrated.rows(select(ServiceCall))
    assert (row.service_id, row.hook, row.hook_instance, row.status) == (
        PATIENT_VIEW,
        "patient-view",
        body["hookInstance"],
        200,
    )
    assert row.patient_key == patient_key(TEST_AUDIT_KEY.encode(), PATIENT_ID, None)
    assert row.latency_ms > 0 and row.knowledge_version
    (issued,) = migrated.rows(select(IssuedCard))
    assert (issued.uuid, issued.call_id, issued.indicator) == (card["uuid"], row.id, "critical")
    rules = migrated.rows(select(FiredRule.rule_id).where(FiredRule.card_uuid == card["uuid"]))
    assert [r.rule_id for r in rules] == ["new-bladder-or-bowel-loss"]
    evidence = migrated.rows(
        select(EvidenceRef.role, EvidenceRef.reference).where(EvidenceRef.card_uuid == card["uuid"])
    )
    assert set(evidence) == {("evidence", "Condition/retention"), ("context", "Condition/spasm")}


def test_calls_without_cards_are_recorded_with_status_and_latency(make_app, migrated):
    app = make_app()
    client = app.test_client()
    assert client.post(URL, json=red_flag_body(prefetch={})).status_code == 412
    assert client.post(URL, data=b"{oops", content_type="application/json").status_code == 400
    flush(app)
    rows = migrated.rows(select(ServiceCall).order_by(ServiceCall.status))
    assert [(r.status, r.service_id) for r in rows] == [(400, PATIENT_VIEW), (412, PATIENT_VIEW)]
    assert rows[1].hook == "patient-view" and rows[1].patient_key  # the envelope was read
    assert rows[0].hook is None and rows[0].patient_key is None  # it was not
    assert all(r.latency_ms >= 0 for r in rows)
    assert migrated.count(IssuedCard) == 0


HOSTILE_IDS = ["no-such-service", "\x1b[31mred\x1b[0m", '<img src=x onerror="alert(1)">']


def test_unknown_service_ids_are_counted_never_recorded_as_calls(make_app, migrated):
    app = make_app()
    client = app.test_client()
    for hostile in HOSTILE_IDS:
        response = client.post(f"/cds-services/{quote(hostile, safe='')}", json={})
        assert response.status_code == 404
    call(client)
    flush(app)
    assert migrated.count(ServiceCall) == 1
    assert client.get("/readyz").get_json()["audit"]["unknown_service_calls"] == len(HOSTILE_IDS)


def test_cors_preflights_are_not_service_calls(make_app, migrated):
    app = make_app(cors_origins="https://sandbox.cds-hooks.org")
    client = app.test_client()
    preflight = {
        "Origin": "https://sandbox.cds-hooks.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    for _ in range(3):
        assert client.options(URL, headers=preflight).status_code == 200
    call(client)
    flush(app)
    assert [r.status for r in migrated.rows(select(ServiceCall.status))] == [200]


def test_older_records_of_unknown_ids_never_reach_the_report(make_app, migrated):
    """Records an older version kept (404s for hostile ids) are left out of every rendering."""
    app = make_app()
    call(app.test_client())
    flush(app)
    engine = migrated.engine()
    try:
        with engine.begin() as connection:
            for n, hostile in enumerate(HOSTILE_IDS):
                connection.execute(
                    insert(ServiceCall).values(
                        id=f"old-{n}",
                        recorded_at=FIXED_NOW,
                        service_id=hostile,
                        status=404,
                        latency_ms=1.0,
                        knowledge_version="old",
                    )
                )
        report = build_report(engine, kb=service_state(app).knowledge)
    finally:
        engine.dispose()
    assert [s["service"] for s in report.services] == [PATIENT_VIEW]
    html = render_html(report)
    for trace in ("alert(1)", "img src=x", "[31mred", "no-such-service"):
        assert trace not in html


def test_the_client_is_recorded_and_no_token_is(make_app, migrated):
    app = make_app()
    caller = Caller(issuer="https://ehr.example", jti="jti-123", tenant="tenant-9")
    app.before_request(lambda: set_caller(caller))
    body = red_flag_body(
        fhirServer="https://ehr.example/fhir",
        fhirAuthorization={
            "access_token": "FHIR-ACCESS-TOKEN-SECRET",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds-service",
        },
    )
    response = app.test_client().post(
        URL, json=body, headers={"Authorization": "Bearer JWT-SECRET-VALUE"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    flush(app)
    (row,) = migrated.rows(select(ServiceCall))
    assert (row.client_issuer, row.client_jti, row.client_tenant) == (
        "https://ehr.example",
        "jti-123",
        "tenant-9",
    )
    assert row.patient_key == patient_key(
        TEST_AUDIT_KEY.encode(), PATIENT_ID, "https://ehr.example/fhir"
    )
    dump = repr(
        [migrated.rows(select(t)) for t in (ServiceCall, IssuedCard, FiredRule, EvidenceRef)]
    )
    assert "FHIR-ACCESS-TOKEN-SECRET" not in dump and "JWT-SECRET-VALUE" not in dump
    assert PATIENT_ID not in dump  # the patient is pseudonymous


def test_readyz_shows_the_writers_counters(make_app):
    app = make_app()
    client = app.test_client()
    call(client)
    flush(app)
    audit = client.get("/readyz").get_json()["audit"]
    assert audit == {
        "recorded": 1,
        "waiting": 0,
        "dropped": 0,
        "failed_writes": 0,
        "unknown_service_calls": 0,
    }


def test_a_failure_to_build_a_record_never_fails_the_call(make_app, monkeypatch):
    app = make_app()

    def broken(*_args: Any) -> None:
        raise RuntimeError("audit bug")

    monkeypatch.setattr(web_audit, "build_record", broken)
    response, _ = call(app.test_client())
    assert response.status_code == 200 and response.get_json()["cards"]
    assert service_state(app).audit.writer.stats()["dropped"] == 1


# ---------------------------------------------------------------- a slow or dead database


@contextmanager
def held_write_lock(database):
    """Another client holds a write lock on the audit tables: the database is slow."""
    engine = database.engine()
    connection = engine.connect()
    try:
        if database.kind == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.begin()
            connection.execute(text("LOCK TABLE service_calls IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


def assert_calls_undelayed(client, calls: int = 10) -> None:
    times = []
    for _ in range(calls):
        response, elapsed = call(client)
        assert response.status_code == 200 and response.get_json()["cards"]
        times.append(elapsed)
    assert max(times) < CALL_BOUND_S, times
    assert statistics.median(times) < CALL_BOUND_S / 5, times


def test_a_slow_database_does_not_delay_the_call(make_app, migrated):
    app = make_app()
    client = app.test_client()
    call(client)  # warm
    flush(app)
    with held_write_lock(migrated):
        assert_calls_undelayed(client)
        time.sleep(2.5)  # longer than the database timeout: the writer's attempt fails
        assert service_state(app).audit.writer.stats()["failed_writes"] >= 1
    flush(app, timeout=20)
    assert migrated.count(ServiceCall) == 11  # retried once the lock was released


def test_a_dead_database_costs_the_call_nothing_and_loses_nothing_once_back(make_app, migrated):
    app = make_app()
    client = app.test_client()
    call(client)
    flush(app)
    migrated.disappear()
    try:
        assert_calls_undelayed(client, calls=20)
        deadline = time.monotonic() + 10
        while service_state(app).audit.writer.stats()["failed_writes"] == 0:
            assert time.monotonic() < deadline, "the writer never tried"
            time.sleep(0.05)
        stats = client.get("/readyz").get_json()["audit"]
        assert stats["waiting"] == 20 and stats["failed_writes"] >= 1
    finally:
        migrated.come_back()
    flush(app, timeout=20)
    assert migrated.count(ServiceCall) == 21
    assert service_state(app).audit.writer.stats()["dropped"] == 0


def test_a_full_queue_drops_and_counts_but_answers(make_app, migrated):
    """At most one batch (being retried) and a full queue wait; every other record is dropped.

    However many records the writer took into its batch before the database went, the counts
    add up: enough calls are made that the queue is full whatever the batch size.
    """
    capacity = 5
    calls = capacity + BATCH_SIZE + 15
    app = make_app(audit_queue_size=capacity)
    client = app.test_client()
    migrated.disappear()
    try:
        for _ in range(calls):
            response, elapsed = call(client)
            assert response.status_code == 200 and elapsed < CALL_BOUND_S
        stats = service_state(app).audit.writer.stats()
        assert stats["dropped"] + stats["waiting"] == calls
        assert capacity <= stats["waiting"] <= capacity + BATCH_SIZE
        assert stats["dropped"] >= calls - capacity - BATCH_SIZE
    finally:
        migrated.come_back()
    flush(app, timeout=20)
    stats = service_state(app).audit.writer.stats()
    assert stats["recorded"] + stats["dropped"] == calls
    assert migrated.count(ServiceCall) == stats["recorded"]


def test_records_waiting_at_shutdown_are_written(make_app, migrated):
    """The writer is retrying when the process stops: it writes once more before exiting."""
    app = make_app()
    client = app.test_client()
    migrated.disappear()
    try:
        for _ in range(5):
            call(client)
        time.sleep(0.5)  # the writer has failed once and waits to retry
        assert service_state(app).audit.writer.stats()["waiting"] == 5
    finally:
        migrated.come_back()
    service_state(app).audit.writer.close(timeout=10)
    assert migrated.count(ServiceCall) == 5
