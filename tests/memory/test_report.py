"""`cds-service report` on both databases: override rates per rule; calls, latency per service."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from builders import ENCOUNTER_START, hook_body
from calls import call, red_flag_body
from click.testing import CliRunner
from conftest import flush

from cds_service.cli import main
from cds_service.core.orders import suggestion_uuid
from cds_service.db import upgrade
from cds_service.memory.report import Override, percentile, top_reasons

REASON_SYSTEM = "https://back-spasm-cds.org/fhir/CodeSystem/override-reason"
RULE = "new-bladder-or-bowel-loss"
XSS = "<script>alert('x')</script>"


def overridden(card: str, at: str, code: str | None = None, comment: str | None = None) -> dict:
    reason: dict[str, Any] = {}
    if code:
        reason["reason"] = {"system": REASON_SYSTEM, "code": code}
    if comment:
        reason["userComment"] = comment
    item = {"card": card, "outcome": "overridden", "outcomeTimestamp": at}
    return {**item, "overrideReason": reason} if reason else item


def accepted(card: str, at: str) -> dict:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion_uuid(card, "emergency-department-referral")}],
        "outcomeTimestamp": at,
    }


@pytest.fixture
def seeded(make_app, migrated):
    """Three red-flag cards (one overridden with a reason and comment, one overridden then
    accepted, one without feedback), a 412, an encounter-start call without cards."""
    app = make_app()
    client = app.test_client()
    cards = [call(client)[0].get_json()["cards"][0]["uuid"] for _ in range(3)]
    assert call(client, red_flag_body(prefetch={}))[0].status_code == 412
    empty = hook_body([], hook="encounter-start")
    assert client.post(f"/cds-services/{ENCOUNTER_START}", json=empty).status_code == 200
    feedback = [
        overridden(cards[0], "2026-11-25T12:01:00Z", "already-evaluated", "seen yesterday"),
        overridden(cards[1], "2026-11-25T12:02:00Z", comment=XSS),
        accepted(cards[1], "2026-11-25T12:03:00Z"),  # the latest feedback counts
        overridden("never-issued", "2026-11-25T12:04:00Z", "already-evaluated"),
    ]
    url = "/cds-services/back-spasm-patient-view/feedback"
    assert client.post(url, json={"feedback": feedback}).status_code == 200
    flush(app)
    return migrated


def report(database, *args: str) -> Any:
    result = CliRunner().invoke(main, ["report", *args], env={"CDS_DATABASE_URL": database.url})
    assert result.exit_code == 0, result.output
    return result


def test_the_json_report(seeded):
    data = json.loads(report(seeded, "--format", "json").stdout)
    assert set(data) == {"rules", "services", "acceptances"}
    referral = {"suggestion": "emergency-department-referral", "issued": 3, "accepted": 1}
    assert referral in data["acceptances"]["suggestions"]
    assert data["acceptances"]["rules"] == [{"rule": "new-bladder-or-bowel-loss", "accepted": 1}]
    (rule,) = data["rules"]
    assert rule == {
        "rule": RULE,
        "issued": 3,
        "accepted": 1,
        "overridden": 1,
        "override_rate": pytest.approx(1 / 3, abs=1e-4),
        "override_reasons": [
            {
                "reason": "Already evaluated or referred for this",  # from the knowledge
                "system": REASON_SYSTEM,
                "code": "already-evaluated",
                "count": 1,
                "comments": ["seen yesterday"],
            }
        ],
    }
    services = {s["service"]: s for s in data["services"]}
    assert set(services) == {"back-spasm-patient-view", ENCOUNTER_START}
    view = services["back-spasm-patient-view"]
    assert (view["calls"], view["precondition_failed"]) == (4, 1)
    assert set(view) == {
        "service",
        "calls",
        "precondition_failed",
        "latency_ms_p50",
        "latency_ms_p95",
    }
    assert 0 < view["latency_ms_p50"] <= view["latency_ms_p95"]
    assert services[ENCOUNTER_START]["calls"] == 1


def test_since_filters_by_the_day_of_the_call(seeded):
    later = json.loads(report(seeded, "--format", "json", "--since", "2026-11-26").stdout)
    assert later == {"rules": [], "services": []}
    same_day = json.loads(report(seeded, "--format", "json", "--since", "2026-11-25").stdout)
    assert same_day["rules"][0]["issued"] == 3


def test_the_table_report(seeded):
    out = report(seeded).stdout
    assert RULE in out and "33%" in out
    assert "Already evaluated or referred for this (1)" in out
    assert "back-spasm-patient-view" in out


def test_the_html_report_is_one_self_contained_page(seeded, tmp_path):
    target = tmp_path / "report.html"
    report(seeded, "--format", "html", "--output", str(target))
    page = target.read_text()
    assert page.startswith("<!doctype html>")
    assert "Plotly.newPlot" in page  # the charts
    assert page.count("Plotly.newPlot") == 2
    assert "plotly.js v" in page  # its library is embedded...
    assert not re.search(r"<script[^>]+src=", page)  # ...not fetched
    assert not re.search(r"<link[^>]+href=\"https?:", page)
    assert RULE in page and "seen yesterday" in page
    assert XSS not in page  # clinicians' comments are escaped


def test_the_report_refuses_a_database_that_is_behind(database):
    upgrade(database.url, "0001_seen_tokens")
    result = CliRunner().invoke(main, ["report"], env={"CDS_DATABASE_URL": database.url})
    assert result.exit_code == 2
    assert "cds-service db upgrade" in result.output


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_ties_between_reasons_come_in_a_stable_order():
    overrides = [
        Override(REASON_SYSTEM, "b", None, "y"),
        Override(REASON_SYSTEM, "a", None, "x"),
        Override(None, None, None, None),
    ]
    first = top_reasons(overrides, {})
    assert first == top_reasons(list(reversed(overrides)), {})
    assert [r["count"] for r in first] == [1, 1, 1]
    assert first[2]["reason"] == "no reason given"
