"""The audit record of one service call, built from data alone: rows for the audit tables.

What a call leaves behind: when, which service and hook, the client (issuer, tenant, token id;
never a token), a pseudonymous patient key instead of the patient id, the HTTP status and latency,
and for a decision the cards with their themes, the rules that fired and the FHIR references each
rule rested on. The rows are plain dicts keyed by column name; an edge module writes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cards import card_matches, card_suggestions, card_themes
from .findings import Finding
from .knowledge import KnowledgeBase
from .order_advice import OrderCard
from .orders import suggestion_uuid
from .rules import Evaluation, Evidence

Row = dict[str, Any]


@dataclass(frozen=True)
class Client:
    """The authenticated CDS client of a call (from its verified JWT)."""

    issuer: str
    tenant: str | None = None
    jti: str | None = None


@dataclass(frozen=True)
class CallFacts:
    """What the HTTP edge knows of a call once it has answered."""

    call_id: str
    recorded_at: dt.datetime
    service_id: str
    status: int
    latency_ms: float
    knowledge_version: str
    hook: str | None = None
    hook_instance: str | None = None
    patient_key: str | None = None
    client: Client | None = None


@dataclass(frozen=True)
class AuditRecord:
    """The rows one call adds: the call, its cards, the rules that fired, their evidence."""

    call: Row
    cards: tuple[Row, ...] = ()
    rules: tuple[Row, ...] = ()
    evidence: tuple[Row, ...] = ()
    suggestions: tuple[Row, ...] = ()


def patient_key(secret: bytes, patient_id: str, fhir_server: str | None = None) -> str:
    """A pseudonym for a patient: HMAC-SHA256 of the FHIR server and the patient id.

    Stable for one key, so that calls about one patient can be linked; without the key it
    cannot be turned back into the id. The same id on two FHIR servers gives two keys.
    """
    scope = (fhir_server or "").rstrip("/")
    message = f"{scope}\x1f{patient_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def call_row(facts: CallFacts) -> Row:
    client = facts.client
    return {
        "id": facts.call_id,
        "recorded_at": facts.recorded_at.astimezone(dt.UTC),
        "service_id": _clip(facts.service_id, 128),
        "hook": _clip(facts.hook, 64),
        "hook_instance": _clip(facts.hook_instance, 256),
        "client_issuer": _clip(client.issuer, 512) if client else None,
        "client_tenant": _clip(client.tenant, 256) if client else None,
        "client_jti": _clip(client.jti, 256) if client else None,
        "patient_key": facts.patient_key,
        "status": facts.status,
        "latency_ms": round(facts.latency_ms, 3),
        "knowledge_version": facts.knowledge_version[:64],
    }


def card_rows(
    call_id: str, themes: Sequence[str], cards: Sequence[Mapping[str, Any]]
) -> tuple[Row, ...]:
    return tuple(
        {
            "uuid": card["uuid"],
            "call_id": call_id,
            "position": position,
            "theme": theme,
            "indicator": card["indicator"],
        }
        for position, (theme, card) in enumerate(zip(themes, cards, strict=True))
    )


def suggestion_rows(
    kb: KnowledgeBase, evaluation: Evaluation, cards: Sequence[Mapping[str, Any]]
) -> tuple[Row, ...]:
    """One row per suggestion a card carried: its uuid (as feedback will quote it), its id in
    the knowledge and the rules that offered it. Only the suggestions the card really carries."""
    rows = []
    for card, matches in zip(cards, card_matches(kb, evaluation, len(cards)), strict=True):
        sent = {s.get("uuid") for s in card.get("suggestions", ())}
        for offered in card_suggestions(kb, matches):
            uuid = suggestion_uuid(card["uuid"], offered.suggestion.id)
            if uuid in sent:
                rows.append(
                    {
                        "uuid": uuid,
                        "card_uuid": card["uuid"],
                        "suggestion_id": offered.suggestion.id[:128],
                        "rules": list(dict.fromkeys(offered.rules)),
                    }
                )
    return tuple(rows)


def rule_rows(call_id: str, evaluation: Evaluation, card_of: Mapping[str, str]) -> tuple[Row, ...]:
    return tuple(
        {
            "call_id": call_id,
            "rule_id": m.rule.id,
            "theme": m.rule.theme,
            "card_uuid": card_of.get(m.rule.theme),
        }
        for m in evaluation.all_matches
    )


def _references(item: Evidence) -> tuple[str, ...]:
    return item.references if isinstance(item, Finding) else (item.reference,)


def evidence_rows(
    call_id: str, evaluation: Evaluation, card_of: Mapping[str, str], first_card: str | None
) -> tuple[Row, ...]:
    """One row per (rule, role, reference): the trigger evidence, the context, the older lines."""
    rows: dict[tuple[str, str, str], Row] = {}

    def add(rule_id: str, role: str, reference: str, card: str | None) -> None:
        reference = reference[:512]
        rows.setdefault(
            (rule_id, role, reference),
            {
                "call_id": call_id,
                "rule_id": rule_id,
                "role": role,
                "reference": reference,
                "card_uuid": card,
            },
        )

    for match in evaluation.all_matches:
        card = card_of.get(match.rule.theme)
        for item in match.evidence:
            for reference in _references(item):
                add(match.rule.id, "evidence", reference, card)
        for finding in match.context:
            for reference in finding.references:
                add(match.rule.id, "context", reference, card)
    if first_card is not None:  # older red flags are one line on the first card only
        for note in evaluation.older:
            for reference in note.finding.references:
                add(note.rule.id, "older", reference, first_card)
    return tuple(rows.values())


def audit_record(
    facts: CallFacts,
    kb: KnowledgeBase | None = None,
    evaluation: Evaluation | None = None,
    cards: Sequence[Mapping[str, Any]] = (),
    order_cards: Sequence[OrderCard] | None = None,
) -> AuditRecord:
    """The rows for a call; a call that reached no decision (4xx, 412) has the call row only."""
    call = call_row(facts)
    if kb is None or evaluation is None:
        return AuditRecord(call)
    if order_cards is not None:
        return _order_record(facts.call_id, call, order_cards)
    themes = card_themes(kb, evaluation, len(cards))
    card_of = {theme: card["uuid"] for theme, card in zip(themes, cards, strict=True)}
    first_card = cards[0]["uuid"] if cards else None
    return AuditRecord(
        call,
        card_rows(facts.call_id, themes, cards),
        rule_rows(facts.call_id, evaluation, card_of),
        evidence_rows(facts.call_id, evaluation, card_of, first_card),
        suggestion_rows(kb, evaluation, cards),
    )


def _order_record(call_id: str, call: Row, order_cards: Sequence[OrderCard]) -> AuditRecord:
    """The rows of an order-hook call: each card under its order rule's id (as its theme), the
    rule, the red-flag evidence it lists, and its suggestions."""
    cards, rules, evidence, suggestions = [], [], [], []
    for position, oc in enumerate(order_cards):
        uuid = oc.card["uuid"]
        cards.append(
            {
                "uuid": uuid,
                "call_id": call_id,
                "position": position,
                "theme": oc.rule.id,
                "indicator": oc.card["indicator"],
            }
        )
        rules.append(
            {"call_id": call_id, "rule_id": oc.rule.id, "theme": oc.rule.id, "card_uuid": uuid}
        )
        evidence += [
            {
                "call_id": call_id,
                "rule_id": oc.rule.id,
                "role": "evidence",
                "reference": ref[:512],
                "card_uuid": uuid,
            }
            for ref in oc.evidence
        ]
        suggestions += [
            {"uuid": s_uuid, "card_uuid": uuid, "suggestion_id": sid[:128], "rules": [oc.rule.id]}
            for s_uuid, sid in oc.suggestions
        ]
    return AuditRecord(call, tuple(cards), tuple(rules), tuple(evidence), tuple(suggestions))
