"""The knowledge is data: validated, sourced, and read by a generic engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.builders import TODAY, condition

from cds_service.core.knowledge import KnowledgeError
from cds_service.core.pipeline import decide
from cds_service.knowledge_files import check_knowledge, load_knowledge
from cds_service.settings import PROJECT_ROOT

KNOWLEDGE = PROJECT_ROOT / "knowledge"
ARTICLE = KNOWLEDGE / "sources" / "back-spasm-article.txt"


def test_the_shipped_knowledge_passes_every_check():
    assert check_knowledge(KNOWLEDGE) == []


def test_the_shipped_article_is_the_shared_source():
    shared = PROJECT_ROOT.parent / "shared" / "sources" / "000_8049258107076682.txt"
    if not shared.exists():
        pytest.skip("the shared source folder is not on this machine")
    assert shared.read_bytes() == ARTICLE.read_bytes()


def test_every_icd_code_exists_in_the_cms_release(kb):
    import simple_icd_10_cm as icd

    codes = [
        c.code
        for vs in kb.valuesets.values()
        for c in vs.codes
        if c.system == "http://hl7.org/fhir/sid/icd-10-cm"
    ]
    assert len(codes) > 300
    assert [c for c in codes if not icd.is_valid_item(c)] == []


@pytest.fixture
def knowledge_copy(tmp_path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


def edit_yaml(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "rules/04-cauda-equina-syndrome.yaml",
            lambda d: d["source"].update(quote="Back spasms are always harmless."),
            "not in the article",
        ),
        (
            "rules/04-cauda-equina-syndrome.yaml",
            lambda d: d["finding"].update(valuesets=["no-such-set"]),
            "unknown value set",
        ),
        (
            "rules/04-cauda-equina-syndrome.yaml",
            lambda d: d.update(theme="nowhere"),
            "unknown theme",
        ),
        ("rules/04-cauda-equina-syndrome.yaml", lambda d: d.pop("action"), "action"),
        (
            "valuesets/cauda-equina-syndrome.yaml",
            lambda d: d["include"].append(
                {"system": "icd-10-cm", "code": "G83.99", "display": "Made up"}
            ),
            "not an ICD-10-CM code",
        ),
        (
            "valuesets/cauda-equina-syndrome.yaml",
            lambda d: d["include"][0].update(display="Something else"),
            "display",
        ),
        ("sources.yaml", lambda d: d["article"].update(text_sha256="0" * 64), "text_sha256"),
    ],
)
def test_knowledge_check_rejects_broken_knowledge(knowledge_copy, file, change, message):
    edit_yaml(knowledge_copy / file, change)
    problems = check_knowledge(knowledge_copy)
    assert any(message in p for p in problems), problems


def test_knowledge_check_command_exit_codes(knowledge_copy):
    command = [sys.executable, "-m", "cds_service", "knowledge", "check", "--dir"]
    ok = subprocess.run([*command, str(KNOWLEDGE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "knowledge ok" in ok.stdout
    edit_yaml(
        knowledge_copy / "rules/04-cauda-equina-syndrome.yaml",
        lambda d: d["source"].update(quote="Invented sentence."),
    )
    bad = subprocess.run([*command, str(knowledge_copy)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "not in the article" in bad.stderr


def test_a_new_rule_is_a_data_change_not_code(knowledge_copy):
    """Add a concept and a rule as YAML only; the engine fires it."""
    (knowledge_copy / "valuesets" / "neck-pain.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "neck-pain",
                "title": "Neck pain",
                "group": "associated-symptom",
                "article_wording": "Neck pain and stiffness",
                "description": "Cervicalgia on record.",
                "include": [{"system": "icd-10-cm", "code": "M54.2", "display": "Cervicalgia"}],
            }
        )
    )
    (knowledge_copy / "rules" / "60-neck-pain.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "neck-pain-with-spasm",
                "title": "Neck pain with back spasm",
                "theme": "causes",
                "rank": 50,
                "summary": "Neck pain with back spasm",
                "finding": {"valuesets": ["neck-pain"], "new_within_days": 30},
                "requires": [{"valuesets": ["back-spasm"], "within_days": 90}],
                "action": "Examine the cervical spine.",
                "source": {"quote": "Neck pain and stiffness"},
            }
        )
    )
    resources = [condition("M62.830", rid="s1"), condition("M54.2", rid="n1")]

    def fired(kb) -> list[str]:
        return [
            m.rule.id for m in decide(kb, resources, "bs-test-1", TODAY, 4, str).evaluation.matches
        ]

    assert "neck-pain-with-spasm" not in fired(load_knowledge(KNOWLEDGE))
    assert "neck-pain-with-spasm" in fired(load_knowledge(knowledge_copy))


def test_invalid_knowledge_stops_loading(knowledge_copy):
    (knowledge_copy / "themes.yaml").write_text("themes: [not, a, mapping]\n")
    with pytest.raises(KnowledgeError):
        load_knowledge(knowledge_copy)


def _keep_keys(service_id: str, keys: list[str]):
    def change(doc) -> None:
        for service in doc["services"]:
            if service["id"] == service_id:
                service["prefetch"] = keys

    return change


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            ["patient", "conditions", "labs", "findings", "medication_requests"],
            "reads measure 'body-temperature', which none of its prefetch keys fetches",
        ),
        (
            ["patient", "conditions", "labs", "findings", "vitals"],
            "from MedicationRequest, MedicationStatement, which none of its prefetch keys fetches",
        ),
        (
            ["conditions", "labs", "findings", "vitals", "medication_statements"],
            "reads the patient's age, but no prefetch key fetches Patient",
        ),
    ],
)
def test_a_service_must_fetch_what_its_rules_read(knowledge_copy, keys, message):
    edit_yaml(knowledge_copy / "services.yaml", _keep_keys("back-spasm-patient-view", keys))
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(knowledge_copy)
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_code_placeholders_stand_for_the_measures_the_rules_read(knowledge_copy):
    kb = load_knowledge(KNOWLEDGE)
    service = kb.services["back-spasm-patient-view"]
    labs = [c for m in kb.measures.values() if m.category == "laboratory" for c in m.codes]
    assert service.codes["measure_codes"] == tuple(labs)
    assert service.codes["vital_codes"] == ("8310-5",)
    edit_yaml(
        knowledge_copy / "labs.yaml",
        lambda d: d["measures"].update(
            sodium={
                "title": "Sodium",
                "codes": [
                    {"code": "2951-2", "display": "Sodium [Moles/volume] in Serum or Plasma"}
                ],
                "canonical_unit": "mmol/L",
                "units": {"mmol/L": 1.0},
                "default_range": {"low": 135, "high": 145, "source": "lab-reference-intervals"},
            }
        ),
    )
    unread = load_knowledge(knowledge_copy)
    assert "sodium" in unread.measures
    assert unread.services["back-spasm-patient-view"].codes["measure_codes"] == tuple(labs)


def test_a_recurring_status_must_be_an_active_one(knowledge_copy):
    edit_yaml(
        knowledge_copy / "policy.yaml",
        lambda d: d["conditions"].update(active_clinical=["active", "recurrence"]),
    )
    with pytest.raises(
        KnowledgeError, match="recurring status 'relapse' is not in active_clinical"
    ):
        load_knowledge(knowledge_copy)


def test_a_new_hook_is_a_hooks_entry_and_a_service(knowledge_copy):
    """The README's example: appointment-book, declared in hooks.yaml and services.yaml only."""
    from cds_service.web.discovery import discovery_document

    edit_yaml(
        knowledge_copy / "hooks.yaml",
        lambda d: d["hooks"].update(
            {
                "appointment-book": {
                    "context": {
                        "userId": {"required": True, "kind": "string"},
                        "patientId": {"required": True, "kind": "id"},
                        "encounterId": {"required": False, "kind": "id"},
                        "appointments": {"required": True, "kind": "object"},
                    },
                    "prefetch_tokens": ["userId", "patientId", "encounterId"],
                    "data": {"appointments": "bundle"},
                }
            }
        ),
    )
    shipped = load_knowledge(KNOWLEDGE).services["back-spasm-patient-view"]
    edit_yaml(
        knowledge_copy / "services.yaml",
        lambda d: d["services"].append(
            {
                "id": "back-spasm-appointment-book",
                "hook": "appointment-book",
                "title": "Back spasm red flags when an appointment is booked",
                "description": "The same checks as the patient-view service.",
                "prefetch": list(shipped.prefetch_keys),
                "themes": list(shipped.themes),
            }
        ),
    )
    kb = load_knowledge(knowledge_copy)
    document = discovery_document(kb, TODAY)
    entries = {s["id"]: s for s in document["services"]}
    booked = entries["back-spasm-appointment-book"]
    assert booked["hook"] == "appointment-book"
    assert booked["prefetch"] == entries["back-spasm-patient-view"]["prefetch"]
