"""Accepted feedback closes the loop: it must name a suggestion of its card, and is counted."""

from __future__ import annotations

from conftest import flush
from sqlalchemy import select
from support.calls import call, red_flag_body

from cds_service.core.orders import suggestion_uuid
from cds_service.storage.models import Feedback, IssuedSuggestion
from cds_service.storage.report import build_report

FEEDBACK = "/cds-services/back-spasm-patient-view/feedback"


def _accept(card: str, *ids: str) -> dict:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": i} for i in ids],
        "outcomeTimestamp": "2026-11-25T12:05:00Z",
    }


def _emergency_card(client) -> dict:
    response, _ = call(client, red_flag_body())
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical" and card["suggestions"]
    return card


def test_the_suggestions_issued_with_a_card_are_recorded(make_app, migrated):
    app = make_app()
    card = _emergency_card(app.test_client())
    flush(app)
    rows = migrated.rows(select(IssuedSuggestion).where(IssuedSuggestion.card_uuid == card["uuid"]))
    assert {r.uuid for r in rows} == {s["uuid"] for s in card["suggestions"]}
    by_id = {r.suggestion_id: r for r in rows}
    assert set(by_id) == {
        "emergency-department-referral",
        "emergency-mri-lumbosacral-spine",
        "bladder-scan-post-void-residual",
    }
    assert by_id["emergency-mri-lumbosacral-spine"].rules == ["new-bladder-or-bowel-loss"]


def test_an_accepted_suggestion_is_stored_and_counted_per_rule_and_suggestion(make_app, migrated):
    app = make_app()
    client = app.test_client()
    card = _emergency_card(client)
    mri = next(s for s in card["suggestions"] if "MRI" in s["label"])
    flush(app)
    response = client.post(FEEDBACK, json={"feedback": [_accept(card["uuid"], mri["uuid"])]})
    assert response.status_code == 200, response.get_data(as_text=True)
    report = build_report(_engine(app))
    counts = {s["suggestion"]: s for s in report.acceptances["suggestions"]}
    assert counts["emergency-mri-lumbosacral-spine"] == {
        "suggestion": "emergency-mri-lumbosacral-spine",
        "issued": 1,
        "accepted": 1,
    }
    assert counts["bladder-scan-post-void-residual"]["accepted"] == 0
    assert {"rule": "new-bladder-or-bowel-loss", "accepted": 1} in report.acceptances["rules"]
    rule = next(r for r in report.rules if r["rule"] == "new-bladder-or-bowel-loss")
    assert rule["accepted"] == 1
    assert report.as_json()["acceptances"] == report.acceptances


def test_an_accepted_id_that_is_not_a_suggestion_of_the_card_is_400_naming_it(make_app, migrated):
    app = make_app()
    client = app.test_client()
    card = _emergency_card(client)
    other = _emergency_card(client)
    flush(app)
    foreign = other["suggestions"][0]["uuid"]  # a real suggestion, of another card
    good = card["suggestions"][0]["uuid"]
    body = {"feedback": [_accept(card["uuid"], good), _accept(card["uuid"], good, foreign)]}
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    issues = response.get_json()["issue"]
    assert [i["expression"] for i in issues] == [["feedback[1].acceptedSuggestions[1].id"]]
    assert foreign in issues[0]["diagnostics"]
    assert migrated.count(Feedback) == 0, "nothing of a refused call is stored"


def test_a_card_not_recorded_yet_is_checked_by_the_uuid_derivation(make_app, migrated):
    client = make_app().test_client()
    card = "0b7c1b2e-59a1-4c55-8a7e-4f5b0d1d2c3e"
    derived = suggestion_uuid(card, "repeat-potassium")
    ok = client.post(FEEDBACK, json={"feedback": [_accept(card, derived)]})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    bad = client.post(FEEDBACK, json={"feedback": [_accept(card, "made-up")]})
    assert bad.status_code == 400
    assert bad.get_json()["issue"][0]["expression"] == ["feedback[0].acceptedSuggestions[0].id"]


def _engine(app):
    from conftest import service_state

    return service_state(app).engine
