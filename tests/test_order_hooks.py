"""Order hooks (order-select, order-sign): routine orders despite red flags, early imaging
without red flags, nothing for other orders; draft orders read leniently."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from support.builders import cards_of, condition, hook_body

ORDER_SELECT = "back-spasm-order-select"
ORDER_SIGN = "back-spasm-order-sign"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
HOOKS = [("order-select", ORDER_SELECT), ("order-sign", ORDER_SIGN)]


def mri(rid: str = "sr-mri", priority: str | None = "routine") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": CPT, "code": "72148"}], "text": "MRI lumbar spine"},
        "subject": {"reference": "Patient/bs-test-1"},
    }
    if priority:
        resource["priority"] = priority
    return resource


def medicine(code: str = "828348", rid: str = "mr-1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
        **extra,
    }


def physio(rid: str = "sr-physio") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": SNOMED, "code": "306170007"}]},
        "subject": {"reference": "Patient/bs-test-1"},
    }


def order_body(hook: str, conditions: list, drafts: list, selections: list | None = None) -> dict:
    body = hook_body(conditions)
    body["hook"] = hook
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "entry": [{"resource": d} for d in drafts],
    }
    if hook == "order-select":
        body["context"]["selections"] = (
            selections
            if selections is not None
            else [f"{d.get('resourceType')}/{d.get('id')}" for d in drafts if isinstance(d, dict)]
        )
    return body


RED_FLAGS = [
    condition("M62.830", rid="c-spasm", onset_days_ago=5),
    condition("R33.9", rid="c-retention", onset_days_ago=2),
]
NEW_SPASM = [condition("M62.830", rid="c-spasm", onset_days_ago=10)]
OLD_SPASM = [condition("M62.830", rid="c-spasm", onset_days_ago=60)]


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_routine_imaging_despite_red_flags_is_one_critical_card_with_a_stat_update(
    call, hook, service
):
    cards = cards_of(call(order_body(hook, RED_FLAGS, [mri()]), service=service))
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "critical"
    assert "Emergency" in card["summary"]
    assert "MRI lumbar spine" in card["detail"] and "ServiceRequest/sr-mri" in card["detail"]
    assert "Condition/c-retention" in card["detail"]
    (update,) = [s for s in card["suggestions"] if s["actions"][0]["type"] == "update"]
    resource = update["actions"][0]["resource"]
    assert resource["priority"] == "stat" and resource["id"] == "sr-mri"
    assert resource["code"] == mri()["code"]
    ServiceRequest.model_validate(resource)


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_a_muscle_relaxant_despite_red_flags_carries_the_emergency_suggestions(call, hook, service):
    drafts = [medicine(), physio()]
    cards = cards_of(call(order_body(hook, RED_FLAGS, drafts), service=service))
    assert [c["indicator"] for c in cards] == ["critical"]
    card = cards[0]
    detail = card["detail"]
    assert "MedicationRequest/mr-1" in detail and "ServiceRequest/sr-physio" in detail
    actions = [s["actions"][0] for s in card["suggestions"]]
    assert {a["type"] for a in actions} == {"create"}
    codes = {c["code"] for a in actions for c in a["resource"]["code"]["coding"]}
    assert "306254002" in codes  # referral to the emergency department
    for action in actions:
        ServiceRequest.model_validate(action["resource"])


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_stat_imaging_despite_red_flags_is_not_routine_management(call, hook, service):
    cards = cards_of(call(order_body(hook, RED_FLAGS, [mri(priority="stat")]), service=service))
    assert cards == []


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_early_imaging_without_red_flags_is_one_info_card_that_deletes_the_draft(
    call, hook, service
):
    cards = cards_of(call(order_body(hook, NEW_SPASM, [mri(priority=None)]), service=service))
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "info"
    assert "six weeks" in card["summary"]
    assert "ServiceRequest/sr-mri" in card["detail"] and "ACP" in card["detail"]
    (suggestion,) = card["suggestions"]
    action = suggestion["actions"][0]
    assert action == {
        "type": "delete",
        "description": action["description"],
        "resourceId": ["ServiceRequest/sr-mri"],
    }
    reasons = {r["code"] for r in card["overrideReasons"]}
    assert reasons == {
        "red-flag-not-coded",
        "trauma",
        "suspected-cancer-or-infection",
        "over-six-weeks",
        "other",
    }


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_early_imaging_is_quiet_for_an_older_episode(call, hook, service):
    assert cards_of(call(order_body(hook, OLD_SPASM, [mri()]), service=service)) == []


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_other_orders_without_red_flags_get_nothing(call, hook, service):
    drafts = [medicine(), physio(), medicine("999999", rid="mr-other")]
    assert cards_of(call(order_body(hook, NEW_SPASM, drafts), service=service)) == []


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_unreadable_drafts_are_skipped_never_a_400(call, hook, service):
    drafts = [
        {"resourceType": "MedicationRequest", "id": "mr-empty", "status": "draft"},
        {"resourceType": "ServiceRequest", "id": "sr-text", "code": {"text": "back x-ray"}},
        "not a resource",
        {"no": "type"},
        mri(),
    ]
    body = order_body(hook, RED_FLAGS, drafts)
    body["context"]["draftOrders"]["entry"].append({"fullUrl": "urn:uuid:no-resource"})
    response = call(body, service=service)
    assert response.status_code == 200
    (card,) = cards_of(response)
    assert "ServiceRequest/sr-mri" in card["detail"]
    assert "mr-empty" not in card["detail"] and "sr-text" not in card["detail"]


def test_order_select_advises_on_the_selected_orders_only(call):
    body = order_body("order-select", RED_FLAGS, [mri(), medicine()], ["MedicationRequest/mr-1"])
    (card,) = cards_of(call(body, service=ORDER_SELECT))
    assert "MedicationRequest/mr-1" in card["detail"]
    assert "ServiceRequest/sr-mri" not in card["detail"]
    body = order_body("order-select", NEW_SPASM, [mri()], [])
    assert cards_of(call(body, service=ORDER_SELECT)) == []


def test_order_hooks_need_their_context(call):
    body = order_body("order-sign", RED_FLAGS, [mri()])
    del body["context"]["draftOrders"]
    response = call(body, service=ORDER_SIGN)
    assert response.status_code == 400
    assert "draftOrders" in response.get_data(as_text=True)


def test_discovery_lists_the_order_services_with_their_prefetch(client):
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    assert services[ORDER_SELECT]["hook"] == "order-select"
    assert services[ORDER_SIGN]["hook"] == "order-sign"
    for sid in (ORDER_SELECT, ORDER_SIGN):
        assert {"conditions", "labs", "findings"} <= set(services[sid]["prefetch"])
