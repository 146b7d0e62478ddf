"""The knowledge compiler refuses a rule whose source it cannot vouch for, naming the rule."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.core.knowledge import KnowledgeError
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT

RULE = "rules/04-cauda-equina-syndrome.yaml"


def _without_quote_or_says(doc: dict[str, Any]) -> None:
    doc["source"].pop("quote")
    doc["source"].pop("says", None)


def _unknown_guideline(doc: dict[str, Any]) -> None:
    doc["source"].update(guideline="no-such-guideline")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_without_quote_or_says, "source: "),
        (_unknown_guideline, "unknown guideline 'no-such-guideline'"),
    ],
)
def test_a_rule_without_a_checkable_source_stops_loading(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    path = knowledge / RULE
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(KnowledgeError) as refused:
        load_knowledge(knowledge)
    assert any(problem in p and "cauda-equina-syndrome" in p for p in refused.value.problems)


def test_a_suggestion_whose_service_request_the_fhir_models_reject_stops_loading(
    tmp_path: Path,
) -> None:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    path = knowledge / "orders.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["orders"]["mri-lumbosacral-spine"]["codes"][0]["display"] = ""  # the schema allows it
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(KnowledgeError) as refused:
        load_knowledge(knowledge)
    rejected = [p for p in refused.value.problems if "is not valid FHIR R4" in p]
    assert rejected, refused.value.problems
    assert all("code.coding[0].display" in p for p in rejected)
    assert any("mri" in p for p in rejected)
