"""The prefetch contract, row by row: data, null, empty Bundle, absent, OperationOutcome."""

from __future__ import annotations

import copy

import pytest
from support.builders import cards_of, condition, hook_body, searchset

OUTCOME_ERROR = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "backend timed out"}],
}
OUTCOME_WARNING = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "warning", "code": "informational", "diagnostics": "truncated"}],
}


def body_with(key: str, value) -> dict:
    body = hook_body([condition("M62.830", onset_days_ago=2)])
    body["prefetch"][key] = value
    return body


def missing_keys(response) -> set[str]:
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return {i["expression"][0].removeprefix("prefetch.") for i in outcome["issue"]}


def test_resource_and_bundle_are_used(call):
    cards = cards_of(call(hook_body([condition("M62.830"), condition("R33.9")])))
    assert cards[0]["indicator"] == "critical"


@pytest.mark.parametrize("key", ["labs", "findings", "patient"])
def test_null_means_no_data(call, key):
    assert call(body_with(key, None)).status_code == 200


@pytest.mark.parametrize(
    "empty",
    [
        {"resourceType": "Bundle", "type": "searchset", "total": 0},
        {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []},
    ],
)
def test_empty_bundle_means_no_data(call, empty):
    assert call(body_with("findings", empty)).status_code == 200


def test_null_conditions_means_no_conditions_not_an_error(call):
    response = call(body_with("conditions", None))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize("key", ["conditions", "labs", "findings"])
def test_absent_required_key_is_412_naming_it(call, key):
    body = hook_body([condition("M62.830")])
    del body["prefetch"][key]
    assert missing_keys(call(body)) == {key}


def test_absent_optional_key_is_fine(call):
    body = hook_body([condition("M62.830")])
    del body["prefetch"]["patient"]
    assert call(body).status_code == 200


def test_no_prefetch_at_all_names_every_required_key(call):
    body = hook_body()
    del body["prefetch"]
    assert missing_keys(call(body)) == {"conditions", "labs", "findings"}


def test_operation_outcome_means_missing(call):
    assert missing_keys(call(body_with("labs", OUTCOME_ERROR))) == {"labs"}


def test_bundle_with_outcome_error_entry_means_missing(call):
    bundle = searchset([])
    bundle["entry"] = [{"resource": OUTCOME_ERROR, "search": {"mode": "outcome"}}]
    assert missing_keys(call(body_with("conditions", bundle))) == {"conditions"}


def test_bundle_with_outcome_warning_keeps_its_data(call):
    bundle = searchset([condition("M62.830"), condition("R33.9")])
    bundle["entry"].append({"resource": OUTCOME_WARNING, "search": {"mode": "outcome"}})
    cards = cards_of(call(body_with("conditions", bundle)))
    assert cards[0]["indicator"] == "critical"


@pytest.mark.parametrize("garbage", ["Bundle", 42, [1, 2], {"entry": []}, {"resourceType": 7}])
def test_garbage_in_a_required_key_counts_as_missing(call, garbage):
    assert missing_keys(call(body_with("conditions", garbage))) == {"conditions"}


def test_412_reason_carries_no_patient_data(call):
    body = hook_body([condition("M62.830")])
    del body["prefetch"]["conditions"]
    text = call(body).get_data(as_text=True)
    assert "bs-test-1" not in text


def test_resources_of_another_patient_in_prefetch_are_ignored(call):
    body = hook_body([condition("M62.830"), condition("R33.9", patient="other-patient")])
    assert [c["indicator"] for c in cards_of(call(body))] == ["info"]


def test_too_many_resources_is_413(client, settings):
    from support.builders import FIXED_NOW, PATIENT_VIEW

    from cds_service import create_app

    app = create_app(settings.model_copy(update={"max_resources": 3}), clock=lambda: FIXED_NOW)
    body = hook_body([condition("M62.830") for _ in range(5)])
    response = app.test_client().post(f"/cds-services/{PATIENT_VIEW}", json=body)
    assert response.status_code == 413
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_prefetch_is_not_mutated(call):
    body = hook_body([condition("M62.830"), condition("R33.9")])
    before = copy.deepcopy(body)
    call(body)
    assert body == before
