"""Retention: `cds-service db purge` removes old audit records and feedback in bounded batches."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import TEST_AUDIT_KEY, flush, service_state
from support.builders import FIXED_NOW
from support.calls import call, red_flag_body

from cds_service import Settings, create_app
from cds_service.cli import main
from cds_service.storage.models import (
    EvidenceRef,
    Feedback,
    FiredRule,
    IssuedCard,
    IssuedSuggestion,
    ServiceCall,
)
from cds_service.storage.retention import purge

TABLES = {
    "service_calls": ServiceCall,
    "issued_cards": IssuedCard,
    "issued_suggestions": IssuedSuggestion,
    "fired_rules": FiredRule,
    "evidence_refs": EvidenceRef,
    "feedback": Feedback,
}
FEEDBACK_URL = "/cds-services/back-spasm-patient-view/feedback"


def traffic(app: Any, calls: int) -> None:
    """`calls` red-flag calls, a 412, and feedback on every card."""
    client = app.test_client()
    cards = [call(client)[0].get_json()["cards"][0]["uuid"] for _ in range(calls)]
    assert call(client, red_flag_body(prefetch={}))[0].status_code == 412
    at = service_state(app).clock().isoformat()
    items = [{"card": c, "outcome": "overridden", "outcomeTimestamp": at} for c in cards]
    assert client.post(FEEDBACK_URL, json={"feedback": items}).status_code == 200
    flush(app)


@pytest.fixture
def old_and_new(make_app, migrated, tmp_path):
    """Five calls made at FIXED_NOW (days ago), two made now, each with feedback."""
    old = make_app()
    traffic(old, 4)
    settings = Settings(
        instance_path=tmp_path / "instance-now",
        database_url=migrated.url,
        allow_unauthenticated=True,
        audit_key=TEST_AUDIT_KEY,
    )
    new = create_app(settings, clock=lambda: dt.datetime.now(dt.UTC))
    try:
        traffic(new, 1)
    finally:
        service_state(new).audit.writer.close(timeout=5)
        service_state(new).engine.dispose()
    return migrated


def counts(database) -> dict[str, int]:
    return {name: database.count(model) for name, model in TABLES.items()}


def test_purge_removes_what_is_older_in_bounded_batches(old_and_new):
    before = counts(old_and_new)
    engine = old_and_new.engine()
    batches = []
    try:
        purged = purge(
            engine,
            FIXED_NOW + dt.timedelta(hours=1),
            batch_size=2,
            progress=lambda p: batches.append(dict(p.rows)),
        )
    finally:
        engine.dispose()
    assert purged.rows["service_calls"] == 5  # 4 with a card, and the 412
    assert purged.rows["feedback"] == 4
    assert purged.rows["issued_cards"] == 4
    assert purged.rows["issued_suggestions"] >= 4  # each emergency card carries suggestions
    assert purged.rows["fired_rules"] >= 4 and purged.rows["evidence_refs"] >= 4
    assert purged.batches == 3 + 2  # calls: 2 + 2 + 1; feedback: 2 + 2
    assert len(batches) == purged.batches
    steps = [b["service_calls"] for b in batches[:3]]
    assert steps == [2, 4, 5], "no batch removes more than its size"
    after = counts(old_and_new)
    assert after == {name: before[name] - purged.rows[name] for name in TABLES}
    assert after["service_calls"] == 2 and after["feedback"] == 1  # what is recent stays
    rows = old_and_new.rows(ServiceCall.__table__.select())
    assert all(row.recorded_at.replace(tzinfo=dt.UTC) > FIXED_NOW for row in rows)


def test_a_second_purge_removes_nothing(old_and_new):
    engine = old_and_new.engine()
    try:
        purge(engine, FIXED_NOW + dt.timedelta(hours=1))
        again = purge(engine, FIXED_NOW + dt.timedelta(hours=1))
    finally:
        engine.dispose()
    assert sum(again.rows.values()) == 0 and again.batches == 0


def run_purge(database, *args: str, **env: str) -> Any:
    return CliRunner().invoke(
        main, ["db", "purge", *args], env={"CDS_DATABASE_URL": database.url, **env}
    )


def test_the_purge_command_reports_what_it_removed(old_and_new):
    kept = run_purge(old_and_new, "--older-than", "3650")
    assert kept.exit_code == 0, kept.output
    assert re.search(r"service_calls\s+0\b", kept.output)
    result = run_purge(old_and_new, "--older-than", "2", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed what was recorded before ")
    assert re.search(r"service_calls\s+5\b", result.output)
    assert re.search(r"feedback\s+4\b", result.output)
    assert counts(old_and_new)["service_calls"] == 2


def test_the_purge_command_takes_the_retention_setting(old_and_new):
    result = run_purge(old_and_new, CDS_RETENTION_DAYS="2")
    assert result.exit_code == 0, result.output
    assert re.search(r"service_calls\s+5\b", result.output)


def test_the_purge_command_refuses_a_database_that_is_behind(database):
    result = run_purge(database, "--older-than", "30")
    assert result.exit_code == 2
    assert "cds-service db upgrade" in result.output
