"""The pure core of a service call: the patient's resources in, cards out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cards import CardContext, render_cards
from .findings import PatientFindings, extract_findings
from .knowledge import KnowledgeBase
from .order_advice import DraftOrder, OrderCard, advise_on_orders
from .rules import Evaluation, evaluate


@dataclass(frozen=True)
class Decision:
    cards: list[dict[str, Any]]
    evaluation: Evaluation
    findings: PatientFindings
    #: on an order hook, the cards about draft orders (what the audit records of them)
    order_cards: tuple[OrderCard, ...] | None = None


def decide(
    kb: KnowledgeBase,
    resources: Iterable[Mapping[str, Any]],
    patient_id: str,
    today: dt.date,
    max_cards: int,
    new_uuid: Callable[[], str],
    *,
    encounter_id: str | None = None,
    base_url: str | None = None,
) -> Decision:
    """Extract findings, evaluate the rules and render the cards (with their suggested orders,
    and with their icon and "About" links when the service's public base URL is known)."""
    findings = extract_findings(kb, resources, patient_id, today)
    evaluation = evaluate(kb, findings, today)
    context = CardContext(patient_id, encounter_id, base_url)
    cards = render_cards(kb, evaluation, max_cards, new_uuid, context)
    return Decision(cards, evaluation, findings)


def decide_orders(
    kb: KnowledgeBase,
    resources: Iterable[Mapping[str, Any]],
    orders: list[DraftOrder],
    patient_id: str,
    today: dt.date,
    new_uuid: Callable[[], str],
    *,
    encounter_id: str | None = None,
    base_url: str | None = None,
) -> Decision:
    """On an order hook: the findings and rules as for a patient view, then only the cards the
    order rules give about the draft orders (the patient-view cards are not repeated)."""
    findings = extract_findings(kb, resources, patient_id, today)
    evaluation = evaluate(kb, findings, today)
    context = CardContext(patient_id, encounter_id, base_url)
    order_cards = advise_on_orders(kb, orders, evaluation, findings, today, new_uuid, context)
    return Decision([c.card for c in order_cards], evaluation, findings, tuple(order_cards))
