"""No card lost to an incomplete record: a red flag already received is answered (200, with one
line naming what is missing); without a warning or critical card, the spec's 412."""

from __future__ import annotations

from support.builders import cards_of, condition, hook_body, observation, quantity


def _with_next_page(bundle: dict) -> dict:
    bundle["link"] = [
        {"relation": "self", "url": "https://ehr.example.org/fhir/Condition?patient=bs-test-1"},
        {"relation": "next", "url": "https://ehr.example.org/fhir/Condition?page=2"},
    ]
    return bundle


def test_a_first_page_with_a_red_flag_is_answered_with_a_line_naming_what_is_missing(call):
    body = hook_body([condition("M62.830", onset_days_ago=5), condition("R33.9", onset_days_ago=2)])
    _with_next_page(body["prefetch"]["conditions"])
    cards = cards_of(call(body))
    assert [c["indicator"] for c in cards] == ["critical"], "only warning and critical cards"
    first_line = cards[0]["detail"].splitlines()[0]
    assert first_line.startswith("**Record read incompletely:** missing conditions")
    assert "more pages" in first_line
    assert "Urinary retention" in cards[0]["detail"]
    assert cards[0]["suggestions"], "the card keeps its suggested orders"


def test_a_first_page_without_a_warning_is_the_specs_412(call):
    body = hook_body([condition("M62.830", onset_days_ago=5)])
    _with_next_page(body["prefetch"]["conditions"])
    response = call(body)
    assert response.status_code == 412
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == ["prefetch.conditions"]
    assert "more pages" in issue["diagnostics"]


def test_a_key_that_cannot_be_fetched_does_not_withhold_another_key_s_red_flag(call):
    body = hook_body(
        [condition("M62.830", onset_days_ago=5), condition("G81.90", onset_days_ago=1)]
    )
    del body["prefetch"]["labs"]  # missing, and there is no fhirServer to fetch it from
    cards = cards_of(call(body))
    assert cards[0]["indicator"] == "critical"
    assert cards[0]["detail"].startswith("**Record read incompletely:** missing labs (not sent")


def test_a_warning_is_answered_too_and_info_cards_are_left_out(call):
    conditions = [condition("M48.061", onset_days_ago=800), condition("M62.830", onset_days_ago=5)]
    labs = [observation("2823-3", valueQuantity=quantity(3.1, "mmol/L"))]
    body = hook_body(conditions, labs)
    body["prefetch"]["findings"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    cards = cards_of(call(body))
    assert [c["indicator"] for c in cards] == ["warning"]
    assert "missing findings" in cards[0]["detail"].splitlines()[0]


def test_only_info_cards_from_what_was_received_is_412(call):
    body = hook_body([condition("M62.830", onset_days_ago=5)])
    del body["prefetch"]["findings"]
    response = call(body)
    assert response.status_code == 412
    assert [i["expression"] for i in response.get_json()["issue"]] == [["prefetch.findings"]]


def test_a_complete_record_has_no_such_line(call):
    body = hook_body([condition("M62.830", onset_days_ago=5), condition("R33.9", onset_days_ago=2)])
    cards = cards_of(call(body))
    assert "Record read incompletely" not in cards[0]["detail"]
