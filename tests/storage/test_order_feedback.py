"""Accepting an order card's suggestions (the stat `update`, the `delete` of a draft) sends
feedback that the committee report counts, per suggestion and per order rule."""

from __future__ import annotations

from conftest import flush
from sqlalchemy import select
from support.builders import condition
from test_order_hooks import mri, order_body

from cds_service.storage.models import IssuedSuggestion
from cds_service.storage.report import build_report

SERVICE = "/cds-services/back-spasm-order-sign"
STAT = "routine-order-despite-red-flags:stat"
DELETE = "early-imaging-without-red-flags:delete"


def _order_card(client, conditions: list, indicator: str) -> dict:
    response = client.post(SERVICE, json=order_body("order-sign", conditions, [mri()]))
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert [c["indicator"] for c in cards] == [indicator]
    return cards[0]


def _accept(card: dict) -> dict:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": s["uuid"]} for s in card["suggestions"]],
        "outcomeTimestamp": "2026-11-25T12:05:00Z",
    }


def test_accepted_update_and_delete_suggestions_are_counted(make_app, migrated):
    app = make_app()
    client = app.test_client()
    red_flags = [
        condition("M62.830", rid="spasm", onset_days_ago=5),
        condition("R33.9", rid="retention", onset_days_ago=2),
    ]
    urgent = _order_card(client, red_flags, "critical")
    assert [a["type"] for s in urgent["suggestions"] for a in s["actions"]] == ["update"]
    early = _order_card(client, [condition("M62.830", rid="spasm", onset_days_ago=14)], "info")
    assert [a["type"] for s in early["suggestions"] for a in s["actions"]] == ["delete"]
    unused = _order_card(client, red_flags, "critical")  # issued, never accepted
    flush(app)
    issued = migrated.rows(select(IssuedSuggestion))
    assert {r.uuid for r in issued} >= {
        s["uuid"] for c in (urgent, early, unused) for s in c["suggestions"]
    }

    response = client.post(
        f"{SERVICE}/feedback", json={"feedback": [_accept(urgent), _accept(early)]}
    )
    assert response.status_code == 200, response.get_data(as_text=True)

    report = build_report(_engine(app))
    counts = {s["suggestion"]: s for s in report.acceptances["suggestions"]}
    assert counts[STAT] == {"suggestion": STAT, "issued": 2, "accepted": 1}
    assert counts[DELETE] == {"suggestion": DELETE, "issued": 1, "accepted": 1}
    rules = report.acceptances["rules"]
    assert {"rule": "routine-order-despite-red-flags", "accepted": 1} in rules
    assert {"rule": "early-imaging-without-red-flags", "accepted": 1} in rules


def _engine(app):
    from conftest import service_state

    return service_state(app).engine
