"""Feedback documents (pure): what is accepted, what is refused and why, the idempotency key."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.core.caller import Caller
from cds_service.core.feedback import (
    MAX_ITEMS,
    FeedbackError,
    feedback_rows,
    fingerprint,
    parse_feedback,
    parse_timestamp,
)
from cds_service.storage.models import Feedback

REASON_SYSTEM = "https://back-spasm-cds.org/fhir/CodeSystem/override-reason"
CARD = "9368d37b-283f-44a0-93ea-547cebab93ed"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

#: As the CDS Hooks Sandbox sends them (its override reason has no `display`).
SANDBOX_ACCEPTED = {
    "card": CARD,
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
    "outcomeTimestamp": "2026-11-24T19:34:51.224Z",
}
SANDBOX_DISMISSED = {
    "card": CARD,
    "outcome": "overridden",
    "outcomeTimestamp": "2026-11-24T19:35:00Z",
}
SANDBOX_OVERRIDDEN = {
    "card": CARD,
    "outcome": "overridden",
    "overrideReason": {"reason": {"code": "already-evaluated", "system": REASON_SYSTEM}},
    "outcomeTimestamp": "2026-11-24T19:36:00.5Z",
}


def problems(body) -> list[tuple[str, str]]:
    with pytest.raises(FeedbackError) as caught:
        parse_feedback(body)
    return caught.value.problems


def test_the_sandboxs_feedback_is_accepted():
    items = parse_feedback({"feedback": [SANDBOX_ACCEPTED, SANDBOX_DISMISSED, SANDBOX_OVERRIDDEN]})
    accepted, dismissed, overridden = items
    assert accepted.accepted_suggestions == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
    assert accepted.outcome_timestamp == dt.datetime(2026, 11, 24, 19, 34, 51, 224000, dt.UTC)
    assert dismissed.reason_code is None and dismissed.user_comment is None
    assert (overridden.reason_system, overridden.reason_code) == (
        REASON_SYSTEM,
        "already-evaluated",
    )
    assert overridden.reason_display is None


def test_a_comment_alone_is_an_override_reason():
    item = {**SANDBOX_DISMISSED, "overrideReason": {"userComment": "patient declined"}}
    (parsed,) = parse_feedback({"feedback": [item], "extension": {"org.example": {}}})
    assert parsed.user_comment == "patient declined" and parsed.reason_code is None


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({**SANDBOX_ACCEPTED, "card": ""}, "feedback[1].card"),
        ({**SANDBOX_ACCEPTED, "card": 7}, "feedback[1].card"),
        ({**SANDBOX_ACCEPTED, "outcome": "dismissed"}, "feedback[1].outcome"),
        (
            {k: v for k, v in SANDBOX_ACCEPTED.items() if k != "acceptedSuggestions"},
            "feedback[1].acceptedSuggestions",
        ),
        ({**SANDBOX_ACCEPTED, "acceptedSuggestions": []}, "feedback[1].acceptedSuggestions"),
        (
            {**SANDBOX_ACCEPTED, "acceptedSuggestions": [{}]},
            "feedback[1].acceptedSuggestions[0].id",
        ),
        ({**SANDBOX_OVERRIDDEN, "overrideReason": {}}, "feedback[1].overrideReason"),
        (
            {**SANDBOX_OVERRIDDEN, "overrideReason": {"reason": {"code": "x"}}},
            "feedback[1].overrideReason.reason.system",
        ),
        (
            {**SANDBOX_OVERRIDDEN, "overrideReason": {"userComment": "x" * 4001}},
            "feedback[1].overrideReason.userComment",
        ),
        ({**SANDBOX_ACCEPTED, "outcomeTimestamp": "2026-11-24"}, "feedback[1].outcomeTimestamp"),
        (
            {**SANDBOX_ACCEPTED, "outcomeTimestamp": "2026-11-24T19:34:51"},
            "feedback[1].outcomeTimestamp",
        ),
        ({**SANDBOX_ACCEPTED, "outcomeTimestamp": 1764012891}, "feedback[1].outcomeTimestamp"),
        ("not an object", "feedback[1]"),
    ],
)
def test_each_problem_names_the_item_and_member(item, where):
    found = problems({"feedback": [SANDBOX_DISMISSED, item]})
    assert [w for w, _ in found] == [where]


def test_every_problem_of_a_document_is_reported():
    bad = {"card": "", "outcome": "maybe", "outcomeTimestamp": "yesterday"}
    found = problems({"feedback": [bad, SANDBOX_ACCEPTED, bad]})
    assert {w for w, _ in found} == {
        f"feedback[{i}].{m}" for i in (0, 2) for m in ("card", "outcome", "outcomeTimestamp")
    }


@pytest.mark.parametrize("body", [[], {}, {"feedback": []}, {"feedback": {}}, {"feedback": None}])
def test_a_document_without_items_is_refused(body):
    assert problems(body)


def test_too_many_items_is_413():
    with pytest.raises(FeedbackError) as caught:
        parse_feedback({"feedback": [SANDBOX_DISMISSED] * (MAX_ITEMS + 1)})
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1985-04-12T23:20:50.52Z", dt.datetime(1985, 4, 12, 23, 20, 50, 520000, dt.UTC)),
        ("1996-12-19T16:39:57-08:00", dt.datetime(1996, 12, 20, 0, 39, 57, tzinfo=dt.UTC)),
        ("2026-11-24t19:34:51.123456789z", dt.datetime(2026, 11, 24, 19, 34, 51, 123456, dt.UTC)),
        ("2026-11-24 19:34:51Z", dt.datetime(2026, 11, 24, 19, 34, 51, tzinfo=dt.UTC)),
        ("2026-02-30T00:00:00Z", None),
        ("2026-11-24T19:34Z", None),
        ("2026-11-24T19:34:51+0100", None),
    ],
)
def test_rfc_3339_timestamps(text, expected):
    assert parse_timestamp(text) == expected


def test_the_fingerprint_is_the_same_for_the_same_feedback_sent_differently():
    first = parse_feedback({"feedback": [SANDBOX_OVERRIDDEN]})[0]
    again = {
        **SANDBOX_OVERRIDDEN,
        "outcomeTimestamp": "2026-11-24T20:36:00.500+01:00",  # the same instant
        "overrideReason": {
            "reason": {"code": "already-evaluated", "system": REASON_SYSTEM, "display": "Seen"}
        },
        "extension": {"org.example": {"x": 1}},
    }
    second = parse_feedback({"feedback": [again]})[0]
    assert fingerprint(first, "svc", "iss") == fingerprint(second, "svc", "iss")


def test_the_fingerprint_tells_different_feedback_apart():
    base = parse_feedback({"feedback": [SANDBOX_OVERRIDDEN]})[0]
    variants = [
        {**SANDBOX_OVERRIDDEN, "card": "another"},
        {**SANDBOX_OVERRIDDEN, "outcomeTimestamp": "2026-11-24T19:36:00.6Z"},
        {**SANDBOX_OVERRIDDEN, "overrideReason": {"userComment": "x"}},
        SANDBOX_DISMISSED,
    ]
    keys = {fingerprint(parse_feedback({"feedback": [v]})[0], "svc", "iss") for v in variants}
    keys.add(fingerprint(base, "svc", "iss"))
    keys.add(fingerprint(base, "other-svc", "iss"))
    keys.add(fingerprint(base, "svc", "another-iss"))
    assert len(keys) == len(variants) + 3


def test_rows_are_one_per_distinct_item_in_fingerprint_order():
    items = parse_feedback(
        {"feedback": [SANDBOX_ACCEPTED, SANDBOX_DISMISSED, SANDBOX_ACCEPTED, SANDBOX_OVERRIDDEN]}
    )
    rows = feedback_rows(items, "svc", NOW, Caller("https://ehr.example", tenant="t", jti="j"))
    assert len(rows) == 3
    assert [r["fingerprint"] for r in rows] == sorted(r["fingerprint"] for r in rows)
    columns = set(Feedback.__table__.columns.keys())
    assert all(set(r) == columns - {"id", "card_matched"} for r in rows)
    assert {r["client_issuer"] for r in rows} == {"https://ehr.example"}


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"]
)
def test_a_timestamp_at_the_calendar_s_edge_is_a_400_naming_the_member(client, stamp):
    if stamp.endswith("Z"):  # year 1 in UTC is a real instant: accepted
        assert parse_feedback({"feedback": [{**SANDBOX_DISMISSED, "outcomeTimestamp": stamp}]})
        return
    response = client.post(
        "/cds-services/back-spasm-patient-view/feedback",
        json={"feedback": [{**SANDBOX_DISMISSED, "outcomeTimestamp": stamp}]},
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert any("outcomeTimestamp" in " ".join(i.get("expression", [])) for i in body["issue"])
