"""The synthetic sample patients of examples/charts/ answer as a careful clinician expects.

Each chart is sent the way an EHR would send it: the prefetch is what a FHIR server answers to
the service's own prefetch templates over the chart's resources. The fired rules are read from
the core directly. Where the service and the clinician disagree, the chart keeps the clinician's
expectation and is listed in KNOWN_DISAGREEMENTS (a strict xfail: when the service is fixed the
test says so, and the entry is to be removed).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from support.builders import FIXED_NOW, PATIENT_VIEW, TODAY
from support.instances import migrated_instance

from cds_service import Settings, create_app
from cds_service.core.knowledge import KnowledgeBase
from cds_service.core.order_advice import draft_orders
from cds_service.core.pipeline import Decision, decide, decide_orders
from cds_service.tester_tools.local_search import prefetch_for
from cds_service.tester_tools.samples import (
    CHARTS_DIR,
    Chart,
    bundle_resources,
    chart_drafts,
    hook_context,
    load_chart,
    load_index,
    read_draft_orders,
)

#: every sample chart through the service: half a minute; run on its own, never in `-m fast`
pytestmark = pytest.mark.slow

ANCHOR, CHARTS = load_index()
ROLL = dt.timedelta(days=30)
INDICATORS = ("critical", "warning", "info")
SUMMARY_LIMIT = 140
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")

#: Charts whose bundle deliberately holds another patient's resources.
OTHER_PATIENT_CHARTS = frozenset({"other-patients-red-flag", "fever-other-patients-prednisone"})

#: The service each hook's charts are played on.
SERVICE_OF_HOOK = {
    "patient-view": PATIENT_VIEW,
    "order-select": "back-spasm-order-select",
    "order-sign": "back-spasm-order-sign",
}

#: Order charts: the action types of each card's suggestions (chart -> one list per card).
ORDER_ACTIONS: dict[str, list[list[str]]] = {
    "order-relaxant-physio-new-incontinence": [["create"]],
    "order-routine-mri-with-red-flags": [["update"]],
    "order-early-mri-two-weeks-spasm": [["delete"]],
    "order-mri-back-spasm-seven-weeks": [],
    "order-unrelated-with-red-flags": [],
}

#: Charts where the service does not give what a careful clinician expects (chart -> why).
KNOWN_DISAGREEMENTS: dict[str, str] = {}

#: Text a chart's cards must show, and text they must not (chart -> (must, must not)).
MENTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ces-new-urinary-retention": (("R33.9", "onset 2026-11-22", "M62.830"), ()),
    "ces-provisional-diagnosis-alone": (("G83.4", "provisional"), ()),
    "new-hemiparesis-with-back-pain": (("20022000", "M54.50"), ()),
    "low-gcs-with-back-spasm": (("9269-2", "**12 "), ()),
    "gcs-14-with-back-spasm": (("9269-2", "**14 ", "13 or 14"), ("Reduced Glasgow",)),
    "critical-low-potassium": (("**2.6 mmol/L**", "critical", "2823-3"), ()),
    "potassium-mass-unit-on-molar-code": (("2823-3", "**12 mg/dL**", "unreadable"), ()),
    "new-cervical-myelopathy-snomed": (("202664003", "161891005"), ()),
    "numbness-of-lower-limb-with-back-pain": (("309537005", "R26.81"), ()),
    "generalized-weakness-and-drowsiness": (("M62.81", "R40.0"), ()),
    "several-red-flags-one-card": (("R32", "M62.81", "R20.0", "M54.50"), ()),
    "known-stenosis-with-new-spasm": (("M48.061", "M62.830"), ()),
    "new-foot-drop-with-back-pain": (("M21.371",), ()),
    "low-potassium-flagged-by-lab": (("**3.1 mmol/L**", "flagged low by the lab"), ()),
    "low-calcium-in-mg-dl": (("**7.9 mg/dL**", "below the lab's reference range"), ()),
    "old-spondylolisthesis-with-spasm": (("M43.16",), ()),
    "sciatica-with-back-pain": (("M54.31", "M54.50"), ()),
    "refuted-urinary-retention": ((), ("R33.9",)),
    "ces-entered-in-error": ((), ("G83.4",)),
    "resolved-bladder-incontinence": ((), ("R32",)),
    "other-patients-red-flag": ((), ("R33.9", "bs-other-neighbour")),
    "old-chronic-incontinence-not-new": (("Also on record, not new", "R32"), ()),
    "normal-potassium": ((), ("2823-3",)),
    "potassium-unknown-unit": (("2823-3", "unreadable", "not recognised"), ()),
    "incontinence-recorded-absent": ((), ("165232002",)),
    "later-normal-potassium-supersedes-low": ((), ("2823-3",)),
    "incontinence-recorded-present-on-exam": (("165232002",), ()),
    "old-hemiplegia-not-new": (("Also on record, not new", "G81.94"), ()),
    "herniated-disc-new-urinary-retention": (("R33.9", "M51.26"), ()),
    "back-spasm-third-episode": (
        ("bs-third-episode-spasm-march", "bs-third-episode-spasm-july"),
        (),
    ),
    "back-spasm-seven-weeks": (("persisting beyond 6 weeks", "M62.830"), ()),
    "incontinence-onset-unknown": (("onset unknown", "some weeks, patient unsure"), ()),
    "exam-free-text-patient-denies": (("patient denies", "165232002"), ("critical",)),
    "cancer-history-with-new-back-pain": (("Z85.3", "M54.50", "Age 60"), ("critical",)),
    "cancer-history-with-new-foot-drop": (("Z85.3", "M21.371", "NICE NG234"), ()),
    "cancer-history-with-old-back-pain": ((), ("Z85.3",)),
    "cancer-history-entered-in-error": ((), ("Z85.3", "History of cancer")),
    "fever-injection-drug-use-new-back-pain": (("**38.7 Cel**", "F11.20", "M54.50"), ()),
    "fever-long-term-prednisone-new-back-pain": (("**101.3 °F**", "RxNorm 312617"), ()),
    "fever-prednisone-stopped-long-ago": (("8310-5",), ("312617", "critical")),
    "fever-with-new-back-pain-alone": (("**38.3 Cel**",), ("critical",)),
    "old-fever-injection-drug-use": ((), ("8310-5", "spinal infection")),
    "osteoporosis-with-new-back-pain": (("M81.0",), ()),
    "osteoporosis-refuted-with-new-back-pain": ((), ("M81.0",)),
    "long-term-prednisone-over-70-new-back-pain": (("RxNorm 312617", "Age 79"), ()),
    "short-prednisone-course-with-new-back-pain": ((), ("312617", "fracture")),
    "weight-loss-with-back-pain": (("R63.4",), ("critical",)),
    "bilateral-sciatica-new": (("M54.31", "M54.32"), ()),
    "bilateral-sciatica-with-new-urinary-retention": (("R33.9", "M54.31", "M54.32"), ()),
    "fever-other-patients-prednisone": ((), ("312617", "bs-gf-other-neighbour", "critical")),
    "every-guideline-flag": (("Z85.46", "F11.20", "M21.371", "R33.9", "8310-5", "R63.4"), ()),
    "order-relaxant-physio-new-incontinence": (
        ("R32", "Cyclobenzaprine 10 mg tablet", "Physiotherapy referral", "cauda equina"),
        (),
    ),
    "order-routine-mri-with-red-flags": (("R33.9", "MRI lumbar spine without contrast"), ()),
    "order-early-mri-two-weeks-spasm": (("ACP", "six weeks"), ("critical",)),
    "old-incontinence-re-coded-today": (
        (
            "Also on record, not new",
            "bs-recoded-incontinence-problem",
            "bs-recoded-incontinence-visit",
        ),
        (),
    ),
}


def _chart_params(*, mark_disagreements: bool) -> list[Any]:
    params = []
    for chart in CHARTS:
        marks = []
        if mark_disagreements and chart.name in KNOWN_DISAGREEMENTS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DISAGREEMENTS[chart.name]))
        params.append(pytest.param(chart, id=chart.name, marks=marks))
    return params


def _request(kb: KnowledgeBase, chart: Chart, today: dt.date) -> tuple[list[Any], dict[str, Any]]:
    """The chart's resources on `today`, and the request an EHR would send on the chart's hook
    (its draft orders in the context of an order hook)."""
    resources = bundle_resources(load_chart(chart, today))
    context = hook_context(
        kb.hooks[chart.hook],
        chart.patient_id,
        "Practitioner/dr-1",
        drafts=chart_drafts(chart, today),
    )
    body = {
        "hook": chart.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch_for(kb, resources, context, today),
    }
    return resources, body


def _cards(client: Any, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    service = SERVICE_OF_HOOK[body["hook"]]
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def _decide(
    kb: KnowledgeBase, resources: list[Any], chart: Chart, today: dt.date, max_cards: int
) -> Decision:
    new_uuid = lambda: str(uuid.uuid4())  # noqa: E731
    if chart.draft_orders:
        hook = kb.hooks[chart.hook]
        context = hook_context(hook, chart.patient_id, "u", drafts=chart_drafts(chart, today))
        orders = draft_orders(kb, context, hook.data)
        return decide_orders(kb, resources, orders, chart.patient_id, today, new_uuid)
    return decide(kb, resources, chart.patient_id, today, max_cards, new_uuid)


def _blank_values(node: Any, where: str = "card") -> Iterator[str]:
    """Where a JSON tree holds None or an empty string, list or object."""
    if node is None or (isinstance(node, str | list | dict) and not node):
        yield where
    elif isinstance(node, str):
        if not node.strip():
            yield where
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _blank_values(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _blank_values(value, f"{where}[{index}]")


def _knowledge_display(kb: KnowledgeBase, system: str, code: str) -> str | None:
    if system == "http://loinc.org":
        for measure in kb.measures.values():
            if code in measure.codes:
                return measure.codes[code]
    for vs_id in sorted(kb.code_index.get((system, code), ())):
        for coding in kb.valuesets[vs_id].codes:
            if coding.system == system and coding.code == code:
                return coding.display
    return None


# ---- The index ------------------------------------------------------------------------------


def test_index_is_consistent(kb):
    assert ANCHOR == TODAY, "the tests' fixed clock is the charts' anchor date"
    names = [c.name for c in CHARTS]
    patients = [c.patient_id for c in CHARTS]
    assert len(set(names)) == len(names), "chart names are unique"
    assert len(set(patients)) == len(patients), "patient ids are unique across charts"
    rule_ids = {r.id for r in kb.rules}
    for chart in CHARTS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", chart.name), chart.name
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", chart.patient_id), chart.patient_id
        assert (CHARTS_DIR / chart.file).is_file(), chart.file
        assert chart.title and chart.clinician_expects, chart.name
        assert set(chart.indicators) <= set(INDICATORS), chart.name
        assert len(set(chart.rules)) == len(chart.rules), f"{chart.name}: rule listed twice"
        assert set(chart.rules) <= rule_ids, f"{chart.name}: unknown rule"
    indexed = {c.file for c in CHARTS}
    on_disk = {p.name for p in CHARTS_DIR.glob("*.json")}
    assert indexed == on_disk, "every chart file is in the index, and only those"
    stale = (set(KNOWN_DISAGREEMENTS) | set(MENTIONS) | OTHER_PATIENT_CHARTS) - set(names)
    assert not stale, f"tests name charts that are not in the index: {sorted(stale)}"


# ---- What the service answers ----------------------------------------------------------------


@pytest.mark.parametrize("chart", _chart_params(mark_disagreements=True))
def test_chart_gives_the_expected_cards(chart, kb, client, settings):
    resources, body = _request(kb, chart, TODAY)
    cards = _cards(client, body)
    assert [c["indicator"] for c in cards] == list(chart.indicators)
    decision = _decide(kb, resources, chart, TODAY, settings.max_cards)
    assert {m.rule.id for m in decision.evaluation.matches} == set(chart.rules)


@pytest.mark.parametrize("chart", _chart_params(mark_disagreements=False))
def test_chart_cards_are_well_formed(chart, kb, client, settings):
    resources, body = _request(kb, chart, TODAY)
    cards = _cards(client, body)
    decision = _decide(kb, resources, chart, TODAY, settings.max_cards)
    # The EHR's prefetch and the whole bundle read directly give the same cards.
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        (c.json["indicator"], c.json["summary"]) for c in decision.cards
    ]
    for card in cards:
        assert len(card["summary"]) < SUMMARY_LIMIT, card["summary"]
        assert card.get("detail", "").strip(), "every card has a detail"
        assert card.get("source", {}).get("label", "").strip(), "every card has a source label"
        assert card["indicator"] in INDICATORS
        blanks = list(_blank_values(card))
        assert not blanks, f"None or empty values in a card: {blanks}"
    critical = [c for c in cards if c["indicator"] == "critical"]
    assert len(critical) <= 1, "every red flag is gathered on one critical card"
    triggers = [
        e.coding.code
        for m in decision.evaluation.matches
        if kb.themes[m.rule.theme].indicator == "critical"
        for e in m.evidence
    ]
    for card in critical:
        for code in triggers:
            assert code in card["detail"], f"the critical card names the triggering code {code}"
    must, must_not = MENTIONS.get(chart.name, ((), ()))
    text = "\n".join(f"{c['summary']}\n{c['detail']}" for c in cards)
    for phrase in must:
        assert phrase in text, f"the cards mention {phrase!r}"
    for phrase in must_not:
        assert phrase not in text, f"the cards do not mention {phrase!r}"


@pytest.fixture(scope="module")
def clients_by_roll(tmp_path_factory) -> dict[dt.timedelta, Any]:
    """Test clients whose clock is the anchor, and the anchor plus ROLL."""
    out = {}
    for roll in (dt.timedelta(0), ROLL):
        instance = migrated_instance(tmp_path_factory.mktemp("roll"))
        settings = Settings(instance_path=instance, allow_unauthenticated=True)
        out[roll] = create_app(settings, clock=lambda roll=roll: FIXED_NOW + roll).test_client()
    return out


@pytest.mark.parametrize("chart", _chart_params(mark_disagreements=False))
def test_chart_rolls_with_today(chart, kb, clients_by_roll, settings):
    """Loaded 30 days later, a chart gives the same cards, its dates moved by 30 days."""
    answers = {}
    for roll, client in clients_by_roll.items():
        today = ANCHOR + roll
        resources, body = _request(kb, chart, today)
        decision = _decide(kb, resources, chart, today, settings.max_cards)
        rules = {m.rule.id for m in decision.evaluation.matches}
        answers[roll] = (_cards(client, body), rules)
    (now_cards, now_rules), (later_cards, later_rules) = answers[dt.timedelta(0)], answers[ROLL]
    assert later_rules == now_rules
    assert len(later_cards) == len(now_cards)
    for now, later in zip(now_cards, later_cards, strict=True):
        for key in ("indicator", "summary", "source", "overrideReasons"):
            assert later.get(key) == now.get(key), key
        assert DATE.sub("<date>", later["detail"]) == DATE.sub("<date>", now["detail"])
        now_dates = set(DATE.findall(now["detail"]))
        later_dates = set(DATE.findall(later["detail"]))
        # the article's review date, and a birth date (it does not roll), are not the patient's
        births = {r["birthDate"] for r in resources if r["resourceType"] == "Patient"}
        fixed = {kb.article.last_review} | births
        moved = {(dt.date.fromisoformat(d) + ROLL).isoformat() for d in now_dates - fixed}
        assert later_dates - fixed == moved


# ---- The chart files ------------------------------------------------------------------------


def test_resource_ids_are_unique_across_charts():
    seen: dict[str, str] = {}
    for chart in CHARTS:
        for resource in bundle_resources(json.loads((CHARTS_DIR / chart.file).read_text("utf-8"))):
            key = f"{resource['resourceType']}/{resource['id']}"
            assert key not in seen, f"{key} is in {seen.get(key)} and {chart.name}"
            seen[key] = chart.name


@pytest.mark.parametrize("chart", _chart_params(mark_disagreements=False))
def test_chart_file_is_a_valid_fhir_transaction(chart, kb):
    raw = json.loads((CHARTS_DIR / chart.file).read_text("utf-8"))
    Bundle.model_validate(raw)
    for resource in bundle_resources(raw):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert raw["type"] == "transaction"
    resources = bundle_resources(raw)
    patients = {r["id"] for r in resources if r["resourceType"] == "Patient"}
    assert chart.patient_id in patients
    for entry in raw["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        uuid.UUID(entry["fullUrl"].removeprefix("urn:uuid:"))
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
    others = set()
    for resource in resources:
        if resource["resourceType"] == "Patient":
            assert resource.get("name") and resource.get("gender") and resource.get("birthDate")
            continue
        subject = resource["subject"]["reference"].removeprefix("Patient/")
        assert resource["id"].startswith(f"{subject}-"), "ids are prefixed with the patient id"
        if subject != chart.patient_id:
            others.add(subject)
        concept = resource.get("code") or resource["medicationCodeableConcept"]
        codings = concept["coding"]
        for coding in codings:
            expected = _knowledge_display(kb, coding["system"], coding["code"])
            assert expected is not None, f"{resource['id']}: {coding['code']} is in no value set"
            assert coding["display"] == expected, f"{resource['id']}: display as in the knowledge"
        if resource["resourceType"] == "Observation":
            assert "effectiveDateTime" in resource, resource["id"]
            categories = {c["code"] for cat in resource["category"] for c in cat["coding"]}
            if categories not in ({"laboratory"}, {"vital-signs"}):
                # a finding is found by the `findings` prefetch: category exam or survey
                assert categories & {"exam", "survey"}, resource["id"]
            if any(c["system"] != "http://loinc.org" for c in codings):
                assert categories & {"exam", "survey"}, resource["id"]
    if chart.name in OTHER_PATIENT_CHARTS:
        assert others, "the chart holds another patient's resources"
        assert others <= patients, "and that other patient is in the bundle"
    else:
        assert not others, f"every resource's subject is Patient/{chart.patient_id}"


# ---- Order charts ----------------------------------------------------------------------------

ORDER_CHARTS = [c for c in CHARTS if c.draft_orders]


def test_every_order_chart_is_listed_with_its_actions():
    assert {c.name for c in ORDER_CHARTS} == set(ORDER_ACTIONS)


@pytest.mark.parametrize("chart", ORDER_CHARTS, ids=lambda c: c.name)
def test_order_chart_draft_orders_are_valid_fhir_of_the_patient(chart):
    drafts = read_draft_orders(CHARTS_DIR / chart.draft_orders)
    assert drafts, chart.draft_orders
    for resource in drafts:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert resource["status"] == "draft"
        assert resource["subject"]["reference"] == f"Patient/{chart.patient_id}"
        assert resource["id"].startswith(f"{chart.patient_id}-draft-")


@pytest.mark.parametrize("chart", ORDER_CHARTS, ids=lambda c: c.name)
def test_order_chart_suggestions_act_on_its_draft_orders(chart, kb, client):
    _, body = _request(kb, chart, TODAY)
    cards = _cards(client, body)
    actions = [[a["type"] for s in c.get("suggestions", []) for a in s["actions"]] for c in cards]
    expected = ORDER_ACTIONS[chart.name]
    assert [sorted(set(a)) for a in actions] == expected
    drafts = {f"{r['resourceType']}/{r['id']}": r for r in chart_drafts(chart, TODAY)}
    for card in cards:
        for draft in drafts.values():
            assert draft["id"] in card["detail"], "the card names each order it concerns"
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "update":
                    resource = action["resource"]
                    assert f"{resource['resourceType']}/{resource['id']}" in drafts
                    assert resource["priority"] == "stat"
                    assert resource["code"] == drafts[f"ServiceRequest/{resource['id']}"]["code"]
                if action["type"] == "delete":
                    assert set(action["resourceId"]) <= set(drafts)
