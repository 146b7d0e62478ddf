"""Actionable cards: suggested draft orders from the knowledge, links, source attributes."""

from __future__ import annotations

import uuid

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from support.builders import (
    ENCOUNTER_START,
    PATIENT_ID,
    cards_of,
    condition,
    hook_body,
    observation,
    quantity,
)

from cds_service.core.knowledge import KnowledgeError, compile_knowledge
from cds_service.core.orders import SYSTEMS, selection_behavior, suggestion_uuid
from cds_service.knowledge_files import read_documents
from cds_service.settings import PROJECT_ROOT

SNOMED, CPT, LOINC = SYSTEMS["snomed"], SYSTEMS["cpt"], SYSTEMS["loinc"]


def _codes(suggestion: dict) -> set[tuple[str, str]]:
    resource = suggestion["actions"][0]["resource"]
    return {(c["system"], c["code"]) for c in resource["code"]["coding"]}


def _by_code(card: dict) -> dict[tuple[str, str], dict]:
    return {code: s for s in card.get("suggestions", []) for code in _codes(s)}


def ces_cards(call) -> list[dict]:
    conditions = [
        condition("M62.830", rid="c-spasm", onset_days_ago=5),
        condition("R33.9", rid="c-retention", onset_days_ago=2),
    ]
    return cards_of(call(hook_body(conditions)))


def test_the_emergency_card_suggests_referral_mri_and_bladder_scan(call):
    card = ces_cards(call)[0]
    assert card["indicator"] == "critical"
    found = _by_code(card)
    referral = found[(SNOMED, "306254002")]
    mri = found[(SNOMED, "433141005")]
    scan = found[(SNOMED, "169251004")]
    assert (CPT, "72148") in _codes(mri) and (CPT, "51798") in _codes(scan)
    assert referral["isRecommended"] is True and mri["isRecommended"] is True
    assert "isRecommended" not in scan
    assert "emergency MRI of the lumbosacral spine (stat)" in mri["label"]
    assert "Bladder scan" in scan["label"]
    assert card["selectionBehavior"] == "any"
    for suggestion in (referral, mri, scan):
        action = suggestion["actions"][0]
        assert action["type"] == "create" and action["description"]
        resource = action["resource"]
        assert resource["status"] == "draft" and resource["intent"] == "order"
        assert resource["priority"] == "stat"
        assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
        assert "encounter" not in resource, "patient-view has no encounter"
        assert resource["reasonReference"] == [{"reference": "Condition/c-retention"}]


def test_every_suggested_resource_is_a_valid_fhir_r4_service_request(call):
    conditions = [
        condition("M62.830", onset_days_ago=5),
        condition("R33.9", onset_days_ago=2),
        condition("M48.061", onset_days_ago=800),
        condition("G81.90", onset_days_ago=1),
    ]
    labs = [observation("2823-3", valueQuantity=quantity(2.1, "mmol/L"))]
    cards = cards_of(call(hook_body(conditions, labs, hook="encounter-start"), ENCOUNTER_START))
    resources = [
        a["resource"] for c in cards for s in c.get("suggestions", []) for a in s["actions"]
    ]
    assert len(resources) >= 5
    for resource in resources:
        parsed = ServiceRequest.model_validate(resource)
        assert parsed.status == "draft"
        assert resource["encounter"] == {"reference": "Encounter/enc-1"}


def test_a_stroke_sign_suggests_the_emergency_department_not_a_spine_mri(call):
    conditions = [condition("M62.830", onset_days_ago=5), condition("G81.90", onset_days_ago=1)]
    card = cards_of(call(hook_body(conditions)))[0]
    found = _by_code(card)
    assert (SNOMED, "306254002") in found
    assert (SNOMED, "433141005") not in found
    assert (SNOMED, "169251004") not in found


def test_known_stenosis_offers_two_alternative_urgent_referrals(call):
    conditions = [condition("M48.061", onset_days_ago=800), condition("M62.830", onset_days_ago=5)]
    card = next(c for c in cards_of(call(hook_body(conditions))) if c["indicator"] == "warning")
    found = _by_code(card)
    neuro, ortho = found[(SNOMED, "308482002")], found[(SNOMED, "308481009")]
    assert card["selectionBehavior"] == "at-most-one"
    for suggestion in (neuro, ortho):
        resource = suggestion["actions"][0]["resource"]
        assert resource["priority"] == "urgent" and resource["intent"] == "proposal"
        assert "isRecommended" not in suggestion


@pytest.mark.parametrize(
    ("value", "priority"), [(3.0, "routine"), (2.1, "stat")], ids=["low", "critical-low"]
)
def test_a_low_potassium_suggests_a_repeat_potassium(call, value, priority):
    spasm = condition("M62.830", onset_days_ago=5)
    lab = observation("2823-3", rid="o-k", valueQuantity=quantity(value, "mmol/L"))
    cards = cards_of(call(hook_body([spasm], [lab])))
    found = {code: s for c in cards for code, s in _by_code(c).items()}
    repeat = found[(LOINC, "2823-3")]
    resource = repeat["actions"][0]["resource"]
    assert resource["priority"] == priority
    assert resource["reasonReference"] == [{"reference": "Observation/o-k"}]
    assert (LOINC, "17861-6") not in found, "no calcium repeat for a potassium result"


def test_a_low_calcium_suggests_a_repeat_calcium(call):
    spasm = condition("M62.830", onset_days_ago=5)
    lab = observation("17861-6", valueQuantity=quantity(7.9, "mg/dL"))
    cards = cards_of(call(hook_body([spasm], [lab])))
    found = {code: s for c in cards for code, s in _by_code(c).items()}
    assert (LOINC, "17861-6") in found and (LOINC, "2823-3") not in found


def test_cards_without_an_order_carry_no_suggestions(call):
    cards = cards_of(call(hook_body([condition("M62.830", onset_days_ago=5)])))
    assert cards and all("suggestions" not in c and "selectionBehavior" not in c for c in cards)


def test_suggestion_uuids_derive_from_card_and_suggestion_and_differ_between_cards(call):
    first, second = ces_cards(call)[0], ces_cards(call)[0]
    assert first["uuid"] != second["uuid"]
    ids_first = {s["uuid"] for s in first["suggestions"]}
    ids_second = {s["uuid"] for s in second["suggestions"]}
    assert not ids_first & ids_second
    mri = _by_code(first)[(SNOMED, "433141005")]
    assert mri["uuid"] == suggestion_uuid(first["uuid"], "emergency-mri-lumbosacral-spine")
    uuid.UUID(mri["uuid"])


def test_source_has_url_icon_and_a_topic_from_the_knowledge_codesystem(call, kb, client):
    card = ces_cards(call)[0]
    source = card["source"]
    assert source["url"] == kb.guidelines["girft-ces-2023"].url
    assert source["icon"] == "http://localhost/about/icon.png"
    topic_system = kb.about["topic_system"]
    assert source["topic"]["system"] == topic_system["url"]
    assert source["topic"]["code"] == "emergency-evaluation"
    icon = client.get("/about/icon.png")
    assert icon.status_code == 200 and icon.mimetype == "image/png"
    assert icon.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(icon.data[16:20]) == 100 and int.from_bytes(icon.data[20:24]) == 100


def test_links_are_absolute_guideline_pages_and_the_about_page(call, kb, client):
    card = ces_cards(call)[0]
    links = card["links"]
    assert all(link["type"] == "absolute" and link["url"].startswith("http") for link in links)
    urls = {link["url"] for link in links}
    assert kb.guidelines["girft-ces-2023"].url in urls
    about = [link for link in links if link["label"] == "About this recommendation"]
    assert [a["url"] for a in about] == ["http://localhost/about/rules/new-bladder-or-bowel-loss"]
    page = client.get("/about/rules/new-bladder-or-bowel-loss")
    assert page.status_code == 200 and page.mimetype == "text/html"


def test_the_public_base_url_makes_the_absolute_urls(tmp_path, settings):
    from support.builders import FIXED_NOW

    from cds_service import create_app

    app = create_app(
        settings.model_copy(update={"public_base_url": "https://cds.example.org/"}),
        clock=lambda: FIXED_NOW,
    )
    response = app.test_client().post(
        "/cds-services/back-spasm-patient-view",
        json=hook_body([condition("M62.830", onset_days_ago=5), condition("R33.9")]),
    )
    card = cards_of(response)[0]
    assert card["source"]["icon"] == "https://cds.example.org/about/icon.png"
    assert any(
        link["url"] == "https://cds.example.org/about/rules/new-bladder-or-bowel-loss"
        for link in card["links"]
    )


def test_the_about_page_is_generated_from_the_rule(client, kb):
    page = client.get("/about/rules/new-bladder-or-bowel-loss.json").get_json()
    rule = next(r for r in kb.rules if r.id == "new-bladder-or-bowel-loss")
    assert page["intervention"]["action"] == rule.action
    assert page["intervention"]["logic"]["new_within_days"] == 14
    for member in ("developer", "funding", "last_review", "last_revision", "validation"):
        assert page[member], member
    assert page["limitations"]
    dates = {c["title"]: c["date"] for c in page["citations"]}
    assert dates[kb.article.title] == kb.article.last_review
    assert dates[kb.guidelines["girft-ces-2023"].title] == "2023"
    codes = {c["code"] for vs in page["data_read"]["finding_codes"] for c in vs["codes"]}
    assert "R33.9" in codes
    suggested = {s["id"] for s in page["suggestions"]}
    assert suggested == {
        "emergency-department-referral",
        "emergency-mri-lumbosacral-spine",
        "bladder-scan-post-void-residual",
    }
    html = client.get("/about/rules/new-bladder-or-bowel-loss").get_data(as_text=True)
    for text in (
        "Intervention details",
        "Developer and funding",
        "Citations",
        "Known limitations",
        "How it was validated",
        "Data it reads",
        "433141005",
        rule.action,
    ):
        assert text in html, text
    assert "A record of: Loss of bladder control, Urinary retention" in html
    assert "New: onset (or, without one, recording) in the last 14 days." in html
    assert client.get("/about/rules/no-such-rule").status_code == 404


def test_the_topic_codesystem_is_served_as_fhir(client, kb):
    from fhir.resources.R4B.codesystem import CodeSystem

    body = client.get("/about/CodeSystem/card-topic").get_json()
    CodeSystem.model_validate(body)
    codes = {c["code"] for c in body["concept"]}
    assert {t.topic.code for t in kb.themes.values() if t.topic} <= codes


def test_every_order_code_names_a_known_source(kb):
    for order in kb.orders.orders.values():
        for coding in (order.category, *order.codes):
            assert coding.source in kb.orders.sources
            assert kb.orders.sources[coding.source].url.startswith("https://")


def _docs():
    return read_documents(PROJECT_ROOT / "knowledge")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["orders"]["suggestions"]["repeat-calcium"]["rules"].append("nope"),
            "unknown rule 'nope'",
        ),
        (
            lambda d: d["orders"]["suggestions"]["repeat-calcium"].update(order="nope"),
            "unknown order 'nope'",
        ),
        (
            lambda d: d["orders"]["orders"]["serum-calcium"]["codes"][0].update(source="memory"),
            "unknown code source 'memory'",
        ),
        (
            lambda d: d["themes"]["themes"]["emergency"]["topic"].update(code="nope"),
            "topic 'nope' is not in",
        ),
    ],
)
def test_the_knowledge_check_refuses_broken_suggestions(change, problem):
    docs = _docs()
    change(docs)
    with pytest.raises(KnowledgeError) as info:
        compile_knowledge(docs)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_selection_behavior_follows_the_groups(kb):
    by_id = {s.id: s for s in kb.orders.suggestions}
    alternatives = [
        by_id["urgent-neurosurgery-referral"],
        by_id["urgent-orthopaedic-spine-referral"],
    ]
    assert selection_behavior(alternatives) == "at-most-one"
    assert selection_behavior([*alternatives, by_id["repeat-potassium"]]) == "any"
    assert selection_behavior([by_id["repeat-potassium"]]) == "any"


def test_try_prints_the_suggested_orders(call):
    from cds_service.tester_tools.tester import TryCall, render_cards

    card = ces_cards(call)[0]
    lines = render_cards(TryCall("svc", ("conditions",), [card]), PATIENT_ID, width=100)
    text = "\n".join(lines)
    assert "Suggestions" in text and "(any)" in text
    assert (
        "Order emergency MRI of the lumbosacral spine (stat) (recommended) [433141005, 72148]"
        in text
    )
