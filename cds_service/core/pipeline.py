"""The pure core of a service call: the patient's resources in, cards out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cards import CardContext, RenderedCard, render_cards
from .fhir_validation import check_cards
from .findings import PatientFindings, extract_findings
from .knowledge import KnowledgeBase, Rule, Service
from .order_advice import DraftOrder, advise_on_orders
from .rules import Evaluation, Match, evaluate


@dataclass(frozen=True)
class Decision:
    """The cards of a call, with the evaluation and findings they came from."""

    cards: tuple[RenderedCard, ...]
    evaluation: Evaluation
    findings: PatientFindings
    #: the rule matches the audit records: on a patient view all of them (those no card shows,
    #: cut by the card limit, without a card); on an order hook none (its cards are its record)
    fired: tuple[Match, ...] = ()


def _rules(kb: KnowledgeBase, service: Service | None) -> tuple[Rule, ...]:
    """The rules a service runs; without a service (tools, tests), every rule."""
    return kb.rules if service is None else kb.service_rules(service)


def _reusable(resources: Iterable[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The resources as a sequence: they are read twice (findings, then the cited records)."""
    return resources if isinstance(resources, list | tuple) else list(resources)


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
    service: Service | None = None,
) -> Decision:
    """Extract findings, evaluate the service's rules (without a service, all) and render the
    cards (with their suggested orders, and with their icon and "About" links when the service's
    public base URL is known); the records the cards cite and their suggestions are validated
    with the FHIR models (`fhir_validation`)."""
    resources = _reusable(resources)
    findings = extract_findings(kb, resources, patient_id, today)
    evaluation = evaluate(kb, findings, today, _rules(kb, service))
    context = CardContext(patient_id, encounter_id, base_url)
    cards = render_cards(kb, evaluation, max_cards, new_uuid, context)
    return Decision(check_cards(cards, resources), evaluation, findings, evaluation.all_matches)


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
    service: Service | None = None,
) -> Decision:
    """On an order hook: the findings and the service's rules as for a patient view, then only
    the cards the order rules give about the draft orders (the patient-view cards are not
    repeated)."""
    resources = _reusable(resources)
    findings = extract_findings(kb, resources, patient_id, today)
    evaluation = evaluate(kb, findings, today, _rules(kb, service))
    context = CardContext(patient_id, encounter_id, base_url)
    cards = advise_on_orders(kb, orders, evaluation, findings, today, new_uuid, context)
    return Decision(check_cards(cards, resources), evaluation, findings)
