"""What the contract fuzzer (test_fuzz.py) found, each pinned by a regression test."""

from __future__ import annotations

import pytest
from support.builders import PATIENT_VIEW, hook_body

from cds_service.core.feedback import FeedbackError, parse_feedback

ACCEPTED = {
    "card": "0",
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": "0"}],
    "outcomeTimestamp": "2000-01-01T00:00:00Z",
}


@pytest.mark.parametrize("extension", [[None, None], "x", 1, None])
def test_a_service_call_whose_extension_is_not_an_object_is_400(call, extension):
    """schemathesis ST201: `"extension": [1]` was answered 200; the contract says object."""
    response = call(hook_body(extension=extension), PATIENT_VIEW)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["issue"][0]["expression"] == ["extension"]


@pytest.mark.parametrize("extension", [[None, None], "x", None])
def test_feedback_whose_extension_is_not_an_object_is_refused(extension):
    """schemathesis ST201: feedback with `"extension": [null, null]` was stored and 200."""
    with pytest.raises(FeedbackError) as caught:
        parse_feedback({"feedback": [ACCEPTED], "extension": extension})
    assert caught.value.problems == [("extension", "must be an object")]


def test_a_feedback_item_whose_extension_is_not_an_object_is_refused():
    """schemathesis ST201: an item with `"extension": [null, null]` was stored and 200."""
    with pytest.raises(FeedbackError) as caught:
        parse_feedback({"feedback": [{**ACCEPTED, "extension": [None, None]}]})
    assert caught.value.problems == [("feedback[0].extension", "must be an object")]


def test_an_object_extension_is_still_ignored(call):
    response = call(hook_body(extension={"org.example": {"x": 1}}), PATIENT_VIEW)
    assert response.status_code == 200
    assert parse_feedback({"feedback": [ACCEPTED], "extension": {"org.example": {}}})


@pytest.mark.parametrize("member", ["fhirServer", "fhirAuthorization", "prefetch"])
def test_a_service_call_with_a_null_member_is_400(call, member):
    """CDS Hooks "Use of JSON": elements SHALL NOT be null; the contract types them."""
    response = call(hook_body(**{member: None}), PATIENT_VIEW)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["issue"][0]["expression"] == [member]


@pytest.mark.parametrize(
    ("item", "where"),
    [
        (
            {
                **ACCEPTED,
                "overrideReason": {"userComment": None, "reason": {"code": "c", "system": "s"}},
            },
            "feedback[0].overrideReason.userComment",
        ),
        (
            {
                **ACCEPTED,
                "overrideReason": {"reason": {"code": "c", "system": "s", "display": None}},
            },
            "feedback[0].overrideReason.reason.display",
        ),
        (
            {
                **ACCEPTED,
                "outcome": "overridden",
                "acceptedSuggestions": None,
                "overrideReason": {"userComment": "seen"},
            },
            "feedback[0].acceptedSuggestions",
        ),
    ],
)
def test_feedback_with_a_null_member_is_refused(item, where):
    """schemathesis ST201: `"userComment": null` was stored and answered 200."""
    with pytest.raises(FeedbackError) as caught:
        parse_feedback({"feedback": [item]})
    assert where in [w for w, _ in caught.value.problems]
