"""Each service names its rules by theme: it runs only those, and fetches only what they read."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.builders import FIXED_NOW, PATIENT_VIEW, TODAY, cards_of, condition, hook_body

from cds_service import Settings, create_app
from cds_service.core.knowledge import KnowledgeBase, KnowledgeError
from cds_service.core.pipeline import decide
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade

KNOWLEDGE = PROJECT_ROOT / "knowledge"
ORDER_SIGN = "back-spasm-order-sign"

#: New back pain with a fever: a follow-up card (fever-with-back-pain) and the questions card.
FEVER_WITH_BACK_PAIN = [condition("R50.9", rid="f1"), condition("M54.50", rid="b1")]


@pytest.fixture
def knowledge_copy(tmp_path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


def _name_themes(
    directory: Path, service_id: str, change: Callable[[list[str]], list[str]]
) -> None:
    """Rewrite one service's `themes` in services.yaml."""
    path = directory / "services.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    for service in doc["services"]:
        if service["id"] == service_id:
            service["themes"] = change(service["themes"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _without(*themes: str) -> Callable[[list[str]], list[str]]:
    return lambda named: [t for t in named if t not in themes]


def _themes_fired(kb: KnowledgeBase, service_id: str) -> set[str]:
    service = kb.services[service_id]
    decision = decide(kb, FEVER_WITH_BACK_PAIN, "bs-test-1", TODAY, 4, str, service=service)
    return {m.rule.theme for m in decision.evaluation.matches}


def test_the_shipped_services_run_every_rule(kb):
    for service in kb.services.values():
        assert set(service.themes) == set(kb.themes), service.id
        assert kb.service_rules(service) == kb.rules, service.id
    assert kb.services[PATIENT_VIEW].order_rules == ()
    assert kb.services[ORDER_SIGN].order_rules == tuple(r.id for r in kb.order_advice.rules)


def test_a_service_runs_only_the_rules_of_its_themes(knowledge_copy, kb):
    assert "follow-up" in _themes_fired(kb, PATIENT_VIEW)
    _name_themes(knowledge_copy, PATIENT_VIEW, _without("follow-up"))
    narrowed = load_knowledge(knowledge_copy)
    service = narrowed.services[PATIENT_VIEW]
    assert "follow-up" not in service.themes
    assert all(r.theme != "follow-up" for r in narrowed.service_rules(service))
    assert _themes_fired(narrowed, PATIENT_VIEW) == {"questions"}
    assert "follow-up" in _themes_fired(narrowed, "back-spasm-encounter-start")


def test_a_service_without_a_theme_answers_without_its_card(knowledge_copy, tmp_path):
    _name_themes(knowledge_copy, PATIENT_VIEW, _without("follow-up"))
    settings = Settings(
        instance_path=tmp_path / "instance",
        allow_unauthenticated=True,
        knowledge_dir=knowledge_copy,
    )
    upgrade(settings.resolved_database_url())
    client = create_app(settings, clock=lambda: FIXED_NOW).test_client()
    body = hook_body(FEVER_WITH_BACK_PAIN)
    shown = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=body))
    assert shown and all("review at follow-up" not in c["summary"] for c in shown)
    body = hook_body(FEVER_WITH_BACK_PAIN, hook="encounter-start")
    started = cards_of(client.post("/cds-services/back-spasm-encounter-start", json=body))
    assert any("review at follow-up" in c["summary"] for c in started)


def test_the_code_placeholders_shrink_with_the_themes(knowledge_copy, kb):
    _name_themes(
        knowledge_copy,
        PATIENT_VIEW,
        lambda _: ["emergency", "verify", "read-text", "follow-up"],
    )
    narrowed = load_knowledge(knowledge_copy).services[PATIENT_VIEW]
    shipped = kb.services[PATIENT_VIEW]
    gcs = tuple(kb.measures["gcs-total"].codes)
    assert narrowed.codes["measure_codes"] == gcs
    assert len(gcs) < len(shipped.codes["measure_codes"])
    assert narrowed.codes["vital_codes"] == shipped.codes["vital_codes"] == ("8310-5",)


def test_a_placeholder_standing_for_no_measure_of_the_themes_is_refused(knowledge_copy):
    _name_themes(knowledge_copy, PATIENT_VIEW, lambda _: ["causes", "questions"])
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(knowledge_copy)
    assert any(
        f"{PATIENT_VIEW}: prefetch labs: {{measure_codes}} stands for no measure" in p
        for p in caught.value.problems
    ), caught.value.problems


@pytest.mark.parametrize(
    ("service_id", "change", "message"),
    [
        (PATIENT_VIEW, lambda named: [*named, "nowhere"], "unknown theme 'nowhere'"),
        (
            PATIENT_VIEW,
            _without("verify"),
            "it runs red-flag rules, whose records to verify or read are shown on theme "
            "'verify', which the service does not name",
        ),
        (
            ORDER_SIGN,
            _without("follow-up"),
            "order-advice/early-imaging-without-red-flags reads the red flags of theme "
            "'follow-up', which the service does not name",
        ),
    ],
)
def test_a_service_naming_a_wrong_theme_is_refused_at_load(
    knowledge_copy, service_id, change, message
):
    _name_themes(knowledge_copy, service_id, change)
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(knowledge_copy)
    assert any(f"services.yaml: {service_id}: {message}" in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_a_service_without_themes_is_refused_at_load(knowledge_copy):
    _name_themes(knowledge_copy, PATIENT_VIEW, lambda _: [])
    with pytest.raises(KnowledgeError, match="themes"):
        load_knowledge(knowledge_copy)
