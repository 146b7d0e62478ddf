"""The pure core of a service call: the patient's resources in, cards out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cards import render_cards
from .findings import PatientFindings, extract_findings
from .knowledge import KnowledgeBase
from .rules import Evaluation, evaluate


@dataclass(frozen=True)
class Decision:
    cards: list[dict[str, Any]]
    evaluation: Evaluation
    findings: PatientFindings


def decide(
    kb: KnowledgeBase,
    resources: Iterable[Mapping[str, Any]],
    patient_id: str,
    today: dt.date,
    max_cards: int,
    new_uuid: Callable[[], str],
) -> Decision:
    """Extract findings, evaluate the rules and render the cards."""
    findings = extract_findings(kb, resources, patient_id, today)
    evaluation = evaluate(kb, findings, today)
    cards = render_cards(kb, evaluation, max_cards, new_uuid)
    return Decision(cards, evaluation, findings)
