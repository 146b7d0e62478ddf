"""`cds-service report` on both databases: override rates per rule; calls, latency per service."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import flush
from support.builders import ENCOUNTER_START, hook_body
from support.calls import call, red_flag_body

from cds_service.cli import main
from cds_service.core.orders import suggestion_uuid
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade
from cds_service.storage.report import (
    DAY_MS,
    Outcome,
    Override,
    Report,
    latest_feedback,
    percentile,
    rule_summaries,
    top_reasons,
)
from cds_service.storage.report.renderers import _calls_chart, _day_axis
from cds_service.storage.report.summaries import _rank

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
    assert set(data) == {
        "period",
        "min_cards_to_judge",
        "rules",
        "weekly",
        "services",
        "calls_per_day",
        "acceptances",
    }
    assert data["period"] == {"since": None, "until": None}
    assert data["min_cards_to_judge"] == 20
    referral = {"suggestion": "emergency-department-referral", "issued": 3, "accepted": 1}
    assert referral in data["acceptances"]["suggestions"]
    assert data["acceptances"]["rules"] == [{"rule": "new-bladder-or-bowel-loss", "accepted": 1}]
    (rule,) = data["rules"]
    assert rule == {
        "rule": RULE,
        "title": "New loss of bladder or bowel control",  # the rule, as the knowledge names it
        "card": "Emergency red flags",  # its card's title
        "indicator": "critical",
        "issued": 3,
        "accepted": 1,
        "overridden": 1,
        "no_feedback": 1,
        "acceptance_rate": pytest.approx(1 / 3, abs=1e-4),
        "override_rate": pytest.approx(1 / 3, abs=1e-4),
        "judged": False,  # 3 cards: too few to judge
        "accepted_suggestions": [{"id": "emergency-department-referral", "count": 1}],
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
    assert data["weekly"] == [
        {
            "rule": RULE,
            "week": "2026-11-23",  # the Monday of 2026-11-25
            "issued": 3,
            "accepted": 1,
            "overridden": 1,
            "acceptance_rate": pytest.approx(1 / 3, abs=1e-4),
            "override_rate": pytest.approx(1 / 3, abs=1e-4),
        }
    ]
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
    assert {"day": "2026-11-25", "service": ENCOUNTER_START, "calls": 1} in data["calls_per_day"]


def test_since_and_until_filter_by_the_day_of_the_call(seeded):
    empty = {"rules": [], "services": [], "weekly": [], "calls_per_day": []}

    def window(*args: str) -> dict[str, Any]:
        data = json.loads(report(seeded, "--format", "json", *args).stdout)
        return {key: data[key] for key in empty}

    assert window("--since", "2026-11-26") == empty
    assert window("--until", "2026-11-24") == empty
    same_day = window("--since", "2026-11-25", "--until", "2026-11-25")
    assert same_day["rules"][0]["issued"] == 3


def test_until_before_since_is_one_line(seeded):
    result = CliRunner().invoke(
        main,
        ["report", "--since", "2026-11-25", "--until", "2026-11-01"],
        env={"CDS_DATABASE_URL": seeded.url},
    )
    assert result.exit_code == 2
    assert "--until is before --since" in result.output


def test_the_minimum_n_is_stated_and_can_be_set(seeded):
    data = json.loads(report(seeded, "--format", "json", "--min-cards", "3").stdout)
    assert data["min_cards_to_judge"] == 3 and data["rules"][0]["judged"] is True


def test_the_table_report_fits_80_columns(seeded):
    out = report(seeded).stdout
    assert "New loss of bladder or" in out and "[new-bladder-or-bowel-" in out  # wrapped
    assert "1 of 3" in out and "(33%)" in out
    assert "too few" in out and "fewer than 20" in out
    assert "CRITICAL cards" in out
    assert "Already evaluated or referred for this (1)" in out
    assert "accepted suggestion emergency-department-referral (1)" in out
    assert "back-spasm-patient-view" in out
    widest = max(len(line) for line in out.splitlines())
    assert widest <= 80, widest


def test_the_html_report_is_one_self_contained_page(seeded, tmp_path):
    target = tmp_path / "report.html"
    report(seeded, "--format", "html", "--output", str(target))
    page = target.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("Plotly.newPlot") == 3  # override rate, weekly trends, calls per day
    assert "plotly.js v" in page  # its library is embedded...
    assert not re.search(r"<script[^>]+src=", page)  # ...not fetched
    assert not re.search(r"<link[^>]+href=\"https?:", page)
    assert "New loss of bladder or bowel control" in page and RULE in page
    assert "seen yesterday" in page and "too few to judge" in page
    assert "week of 23 Nov" in page
    assert XSS not in page  # clinicians' comments are escaped


def test_the_html_report_goes_outside_the_repository_by_default(seeded, tmp_path):
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main,
        ["report", "--format", "html"],
        env={"CDS_DATABASE_URL": seeded.url, "HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    (written,) = (home / "cds-service-reports").glob("rule-report-*.html")
    assert f"wrote {written}" in result.output
    assert PROJECT_ROOT not in written.resolve().parents


def test_a_rule_with_too_few_cards_is_not_ranked_first():
    cards = [("tiny", f"t{i}") for i in range(2)] + [("large", f"l{i}") for i in range(30)]
    noisy = Outcome("overridden", Override(None, None, None, None))
    latest = {"t0": noisy, "t1": noisy} | {f"l{i}": noisy for i in range(6)}
    rows = rule_summaries(cards, latest, {}, min_cards=20)
    assert [r["rule"] for r in rows] == ["large", "tiny"]  # 20% judged before 100% of 2
    assert rows[1]["override_rate"] == 1.0 and rows[1]["judged"] is False


def test_rules_are_grouped_by_indicator_critical_first():
    rows = [
        {"indicator": "info", "judged": True, "override_rate": 0.9, "issued": 50, "title": "a"},
        {"indicator": "critical", "judged": True, "override_rate": 0.1, "issued": 50, "title": "b"},
        {"indicator": "warning", "judged": False, "override_rate": 1.0, "issued": 2, "title": "c"},
    ]
    assert [r["title"] for r in sorted(rows, key=_rank)] == ["b", "c", "a"]


def test_one_day_of_calls_has_whole_day_ticks():
    day = dt.date(2026, 11, 25)
    axis = _day_axis([day])
    assert axis["dtick"] == DAY_MS and axis["tick0"] == "2026-11-25"
    assert axis["tickformat"] == "%a %d %b"  # "Wed 25 Nov", never 23:59:59.999
    assert axis["range"] == ["2026-11-24T12:00:00", "2026-11-25T12:00:00"]
    month = _day_axis([day - dt.timedelta(days=29), day])
    assert month["dtick"] == 7 * DAY_MS and month["tick0"] == "2026-10-26"  # Mondays


def test_accepted_suggestions_are_counted_by_id():
    rows = [
        SimpleNamespace(
            id=1,
            card_uuid="c1",
            outcome="accepted",
            outcome_timestamp=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
            accepted_suggestions=["s-a", {"id": "s-b"}],
            override_system=None,
            override_code=None,
            override_display=None,
            user_comment=None,
        )
    ]
    latest = latest_feedback(rows)
    assert latest["c1"].suggestions == ("s-a", "s-b")
    (row,) = rule_summaries([("r", "c1"), ("r", "c2")], latest, {})
    assert row["accepted_suggestions"] == [{"id": "s-a", "count": 1}, {"id": "s-b", "count": 1}]


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


def test_one_day_of_calls_draws_a_day_wide_bar():
    day = dt.date(2026, 11, 25)
    built = Report(rules=[], services=[], calls_per_day={(day, "back-spasm-patient-view"): 7})
    (bars,) = _calls_chart(built).data
    assert list(bars.y) == [7] and bars.width[0] == 0.8 * DAY_MS
