"""The FHIR models check the records a card cites and the resources its suggestions carry.

On the sample charts every cited record and every suggestion is valid FHIR R4, so the check
changes no card. On a fuzz corpus (the charts' cited records with one element broken), a card says
a record did not validate exactly when `fhir.resources` rejects it; an element no rule reads
may add that line, never change the cards.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from support.builders import PATIENT_ID, TODAY, condition
from support.hostile import element_paths, replace_element

from cds_service.core import fhir_validation
from cds_service.core.cards import CardSuggestion, RenderedCard, Traced
from cds_service.core.fhir_validation import check_cards, fhir_problem
from cds_service.core.knowledge import KnowledgeBase
from cds_service.core.pipeline import decide
from cds_service.core.references import resource_reference
from cds_service.tester_tools.samples import bundle_resources, load_chart, load_index

_, CHARTS = load_index()
PATIENT_VIEW = "back-spasm-patient-view"


def _models_accept(resource: Mapping[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return False
    return True


def _decide(kb: KnowledgeBase, resources: list[dict[str, Any]], patient_id: str):
    service = kb.services[PATIENT_VIEW]
    ids = iter(range(10_000))
    return decide(
        kb, resources, patient_id, TODAY, 10, lambda: f"card-{next(ids)}", service=service
    )


def _cited(cards: tuple[RenderedCard, ...]) -> set[str]:
    """The records the cards' text names."""
    return {ref for card in cards for ref in card.shown}


def _chart(chart) -> tuple[list[dict[str, Any]], str]:
    return bundle_resources(load_chart(chart, TODAY)), chart.patient_id


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_sample_charts_cite_valid_records_and_offer_valid_suggestions(kb, chart) -> None:
    resources, patient_id = _chart(chart)
    decision = _decide(kb, resources, patient_id)
    by_reference = {resource_reference(r): r for r in resources}
    for reference in _cited(decision.cards):
        assert _models_accept(by_reference[reference]), reference
    for card in decision.cards:
        assert "**Record check:**" not in card.json["detail"]
        for suggestion in card.json.get("suggestions", ()):
            for action in suggestion["actions"]:
                assert _models_accept(action["resource"])
        assert len(card.suggestions) == len(card.json.get("suggestions", ()))


def _concept(resource: dict[str, Any]) -> dict[str, Any]:
    """The coded concept a record is recognised by (a medicine's, or its code)."""
    return resource.get("medicationCodeableConcept") or resource["code"]


#: Ways to break one element of a record: each yields a record `fhir.resources` may reject.
BREAKS: list[tuple[str, Callable[[dict[str, Any], random.Random], None]]] = [
    ("day-month-year", lambda r, _: r.__setitem__("onsetDateTime", "25/11/2026")),
    ("time-without-zone", lambda r, _: r.__setitem__("onsetDateTime", "2026-11-20T10:00:00")),
    ("impossible-date", lambda r, _: r.__setitem__("recordedDate", "2026-02-30")),
    ("status-as-string", lambda r, _: r.__setitem__("clinicalStatus", "active")),
    ("unknown-element", lambda r, _: r.__setitem__("severityText", "bad")),
    ("empty-note", lambda r, _: r.__setitem__("note", [{}])),
    ("coding-object", lambda r, _: _concept(r).__setitem__("coding", _concept(r)["coding"][0])),
    ("code-number", lambda r, _: _concept(r)["coding"][0].__setitem__("code", 5)),
    ("subject-string", lambda r, _: r.__setitem__("subject", "Patient/x")),
    ("id-with-space", lambda r, rng: r.__setitem__("meta", {"versionId": " "})),
    ("valid-extension", lambda r, _: r.__setitem__("language", "en")),
    ("valid-note", lambda r, rng: r.__setitem__("note", [{"text": f"n{rng.random()}"}])),
]


#: Breaks of elements no rule reads: they may add a record check, never change the cards' tiers.
UNREAD_ELEMENTS = {
    "unknown-element",
    "empty-note",
    "id-with-space",
    "valid-extension",
    "valid-note",
}


def _fuzz_cases(count: int) -> list[tuple[str, str, int]]:
    rng = random.Random(20261201)
    with_cards = [c for c in CHARTS if c.indicators]
    return [
        (rng.choice(with_cards).name, rng.choice(BREAKS)[0], rng.randrange(1_000))
        for _ in range(count)
    ]


@pytest.mark.parametrize(("chart_name", "break_name", "pick"), _fuzz_cases(60))
def test_a_card_names_a_cited_record_exactly_when_the_models_reject_it(
    kb, chart_name: str, break_name: str, pick: int
) -> None:
    chart = next(c for c in CHARTS if c.name == chart_name)
    resources, patient_id = _chart(chart)
    before = _decide(kb, resources, patient_id)
    cited = sorted(_cited(before.cards))
    if not cited:
        pytest.skip("the chart's cards cite no record")
    target_ref = cited[pick % len(cited)]
    broken = copy.deepcopy(resources)
    target = next(r for r in broken if resource_reference(r) == target_ref)
    dict(BREAKS)[break_name](target, random.Random(pick))

    after = _decide(kb, broken, patient_id)

    if break_name in UNREAD_ELEMENTS:
        assert [c.indicator for c in after.cards] == [c.indicator for c in before.cards]
    rejected = not _models_accept(target)
    for card in after.cards:
        cites_target = target_ref in card.shown
        says_so = f"- {target_ref} does not pass FHIR R4 validation" in card.json["detail"]
        assert says_so == (cites_target and rejected), (card.json["summary"], break_name)


def test_a_red_flag_on_an_invalid_record_is_shown_with_the_element_to_check(kb) -> None:
    retention = condition("R33.9", rid="odd-retention", onsetDateTime="2026-11-23T08:00:00")
    spasm = condition("M62.830", rid="spasm", onset_days_ago=3)

    cards = _decide(kb, [retention, spasm], PATIENT_ID).cards

    critical = next(c.json for c in cards if c.indicator == "critical")
    detail = critical["detail"]
    assert "- Condition/odd-retention does not pass FHIR R4 validation (onsetDateTime)" in detail
    assert detail.index("**Record check:**") < detail.index("**Action")
    assert "Condition/spasm does not pass" not in detail


def _card_offering(resource: dict[str, Any], other: dict[str, Any]) -> RenderedCard:
    suggestions = [
        {"label": "one", "uuid": "s-1", "actions": [{"type": "create", "resource": resource}]},
        {"label": "two", "uuid": "s-2", "actions": [{"type": "create", "resource": other}]},
    ]
    answer = {
        "uuid": "card-1",
        "summary": "s",
        "indicator": "critical",
        "detail": "**Findings**\n\n**Action:** do\n",
        "suggestions": suggestions,
        "selectionBehavior": "at-most-one",
    }
    offered = (CardSuggestion("s-1", "one", ("r",)), CardSuggestion("s-2", "two", ("r",)))
    return RenderedCard(answer, "t", "critical", ("r",), (), offered)


def _service_request(code: object) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }


def test_a_finding_recorded_many_times_has_the_records_its_line_names_checked(kb) -> None:
    retention = [
        condition("R33.9", rid=f"retention-{i:02}", onset_days_ago=2 + i % 3) for i in range(30)
    ]
    for record in retention:
        record["onsetDateTime"] += "T08:00:00"  # a time without a zone: not valid FHIR
    spasm = condition("M62.830", rid="spasm", onset_days_ago=3)

    cards = _decide(kb, [*retention, spasm], PATIENT_ID).cards

    critical = next(c for c in cards if c.indicator == "critical")
    traced = {t.reference for t in critical.evidence}
    assert {f"Condition/retention-{i:02}" for i in range(30)} <= traced
    named = [r for r in critical.shown if r.startswith("Condition/retention-")]
    assert len(named) == 4, "a line names four records and counts the rest"
    detail = critical.json["detail"]
    assert detail.count("does not pass FHIR R4 validation (onsetDateTime)") == len(named)
    assert all(f"- {ref} does not pass" in detail for ref in named)


def test_a_suggestion_whose_resource_does_not_validate_is_withheld() -> None:
    card = _card_offering(_service_request("   "), _service_request("77477000"))

    (checked,) = check_cards([card], [])

    assert [s["uuid"] for s in checked.json["suggestions"]] == ["s-2"]
    assert [s.uuid for s in checked.suggestions] == ["s-2"]
    assert checked.json["selectionBehavior"] == "at-most-one"
    assert len(card.json["suggestions"]) == 2, "the rendered card itself is not changed"


def test_a_card_left_without_suggestions_drops_its_selection_behavior() -> None:
    card = _card_offering(_service_request(""), _service_request(7))

    (checked,) = check_cards([card], [])

    assert "suggestions" not in checked.json
    assert "selectionBehavior" not in checked.json
    assert checked.suggestions == ()
    assert checked.json["detail"] == card.json["detail"]


def test_a_valid_card_is_returned_as_it_is() -> None:
    card = _card_offering(_service_request("77477000"), _service_request("241615005"))
    spasm = condition("M62.830", rid="spasm")
    card = dataclasses.replace(card, evidence=(Traced("r", "evidence", "Condition/spasm"),))

    assert check_cards([card], [spasm]) == (card,)


def _counting_validations(monkeypatch) -> list[object]:
    """The resources the models validate from now on (outcomes remembered before forgotten)."""
    seen: list[object] = []
    validate = fhir_validation._validate
    monkeypatch.setattr(fhir_validation, "_validate", lambda r: seen.append(r) or validate(r))
    fhir_validation.forget_outcomes()
    return seen


def test_validation_is_remembered_by_content_not_by_identity(monkeypatch) -> None:
    validated = _counting_validations(monkeypatch)
    record = condition("M62.830", rid="same")
    assert fhir_problem(record) is None
    assert fhir_problem(copy.deepcopy(record)) is None
    assert len(validated) == 1

    record["onsetDateTime"] = "yesterday"
    assert fhir_problem(record) == "onsetDateTime"
    assert len(validated) == 2


def test_a_large_record_is_remembered_and_a_change_in_it_is_seen(monkeypatch) -> None:
    validated = _counting_validations(monkeypatch)
    record = condition("M62.830", rid="large", note=[{"text": "x" * 100_000}])
    assert fhir_problem(record) is None
    assert fhir_problem(record) is None
    assert len(validated) == 1

    record["note"].append({})
    assert fhir_problem(record) == "note[1].text"
    assert len(validated) == 2


def test_a_problem_names_nested_elements_and_counts_the_rest() -> None:
    record = condition("M62.830", rid="many")
    record["code"]["coding"][0]["code"] = 5
    record.update(onsetDateTime="x", recordedDate="y", subject="z", abatementString=[])

    assert fhir_problem(record) == "abatementString, code.coding[0].code, onsetDateTime and 2 more"
    assert fhir_problem({"resourceType": "NoSuchType"}) == "resourceType"
    assert fhir_problem({"id": "x"}) == "resourceType"


def _suggested_resources(kb: KnowledgeBase) -> list[dict[str, Any]]:
    """Every resource the sample charts' cards suggest, one of each kind of order."""
    found: dict[str, dict[str, Any]] = {}
    for chart in CHARTS:
        resources, patient_id = _chart(chart)
        for card in _decide(kb, resources, patient_id).cards:
            for suggestion in card.json.get("suggestions", ()):
                for action in suggestion["actions"]:
                    resource = action["resource"]
                    found.setdefault(str(resource.get("code")), resource)
    return list(found.values())


#: Values a reference may hold: plain "Type/id" ones (their shape is validated) and odd ones
#: (validated as they are).
ODD_REFERENCES = ["", " ", "a b", "Patient/", "/x", "Patient/" + "x" * 65, "Patient/é", "x"]
ODD_REFERENCES += ["Patient/x\n", "urn:uuid:1", 7, None, True, {"x": 1}, [], ["Patient/x"]]


def _plain_reference(rng: random.Random) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    kind = "".join(rng.choice(letters) for _ in range(rng.randint(1, 64)))
    ident = "".join(rng.choice(letters + "0123456789-.") for _ in range(rng.randint(1, 64)))
    return f"{kind}/{ident}"


def test_a_suggestion_and_its_reference_shape_validate_alike(kb) -> None:
    rng = random.Random(20261201)
    resources = _suggested_resources(kb)
    draft = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "cyclobenzaprine 10 mg"},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "requester": {"reference": "Practitioner/d1", "display": "Dr One"},
    }
    assert len(resources) >= 3, "the sample charts suggest orders"
    compared = 0
    for resource in [*resources, draft]:
        paths = [p for p in element_paths(resource) if p[-1] == "reference"]
        assert paths
        for _ in range(40):
            variant = copy.deepcopy(resource)
            for path in paths:
                pick = rng.random()
                value = rng.choice(ODD_REFERENCES) if pick < 0.3 else _plain_reference(rng)
                replace_element(variant, path, value)
            canonical = orjson.dumps(variant, option=orjson.OPT_SORT_KEYS)
            shape = orjson.loads(fhir_validation.reference_shape(canonical))
            assert fhir_validation._validate(shape) == fhir_validation._validate(variant)
            compared += 1
    assert compared >= 40 * 4


def test_the_same_suggestion_for_another_patient_is_not_validated_again(monkeypatch) -> None:
    validated = _counting_validations(monkeypatch)
    for patient in ("p-1", "p-2", "a-third-patient.7"):
        request = {**_service_request("77477000"), "subject": {"reference": f"Patient/{patient}"}}
        request["reasonReference"] = [{"reference": f"Condition/{patient}-retention"}]
        card = _card_offering(request, _service_request("241615005"))
        (checked,) = check_cards([card], [])
        assert [s["uuid"] for s in checked.json["suggestions"]] == ["s-1", "s-2"]
    assert len(validated) == 2, "one validation per kind of suggestion"

    odd = {**_service_request("77477000"), "subject": {"reference": " "}}
    check_cards([_card_offering(odd, _service_request("241615005"))], [])
    assert len(validated) == 3, "an odd reference is validated as it is"

    empty = {**_service_request("77477000"), "subject": {"reference": ""}}
    (checked,) = check_cards([_card_offering(empty, _service_request("241615005"))], [])
    assert [s["uuid"] for s in checked.json["suggestions"]] == ["s-2"]
