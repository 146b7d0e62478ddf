"""The audit record of one service call, built from data alone: rows for the audit tables.

What a call leaves behind: when, which service and hook, the client (issuer, tenant, token id;
never a token), a pseudonymous patient key instead of the patient id, the HTTP status and latency,
and for a decision the cards with their themes, the rules that fired and the FHIR references each
rule rested on, all as the typed cards carry them. The rows are plain dicts keyed by column name;
an edge module writes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .caller import Caller
from .cards import RenderedCard, Traced, traces
from .pipeline import Decision
from .rules import Match

Row = dict[str, Any]


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
    client: Caller | None = None


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


def card_rows(call_id: str, cards: Sequence[RenderedCard]) -> tuple[Row, ...]:
    return tuple(
        {
            "uuid": card.uuid,
            "call_id": call_id,
            "position": position,
            "theme": card.theme,
            "indicator": card.indicator,
        }
        for position, card in enumerate(cards)
    )


def suggestion_rows(cards: Sequence[RenderedCard]) -> tuple[Row, ...]:
    """One row per suggestion a card carried: its uuid (as feedback will quote it), its id in
    the knowledge and the rules that offered it."""
    return tuple(
        {
            "uuid": s.uuid,
            "card_uuid": card.uuid,
            "suggestion_id": s.suggestion_id[:128],
            "rules": list(s.rules),
        }
        for card in cards
        for s in card.suggestions
    )


def rule_rows(
    call_id: str, cards: Sequence[RenderedCard], unshown: Sequence[Match]
) -> tuple[Row, ...]:
    """The rules each card shows, then those that fired without a card (cut by the limit)."""
    shown = [(rule, card.theme, card.uuid) for card in cards for rule in card.rules]
    shown += [(m.rule.id, m.rule.theme, None) for m in unshown]
    return tuple(
        {"call_id": call_id, "rule_id": rule, "theme": theme, "card_uuid": card}
        for rule, theme, card in shown
    )


def evidence_rows(
    call_id: str, cards: Sequence[RenderedCard], unshown: Sequence[Match]
) -> tuple[Row, ...]:
    """One row per (rule, role, reference): each card's evidence, context and older lines, then
    the evidence and context of the rules that fired without a card."""
    traced: list[tuple[Traced, str | None]] = [(t, c.uuid) for c in cards for t in c.evidence]
    traced += [(t, None) for t in traces(unshown)]
    rows: dict[tuple[str, str, str], Row] = {}
    for trace, card in traced:
        reference = trace.reference[:512]
        rows.setdefault(
            (trace.rule, trace.role, reference),
            {
                "call_id": call_id,
                "rule_id": trace.rule,
                "role": trace.role,
                "reference": reference,
                "card_uuid": card,
            },
        )
    return tuple(rows.values())


def _unshown(decision: Decision) -> list[Match]:
    """The recorded rule matches that no card of the decision shows."""
    shown = {rule for card in decision.cards for rule in card.rules}
    return [m for m in decision.fired if m.rule.id not in shown]


def audit_record(facts: CallFacts, decision: Decision | None = None) -> AuditRecord:
    """The rows for a call; a call that reached no decision (4xx, 412) has the call row only."""
    call = call_row(facts)
    if decision is None:
        return AuditRecord(call)
    cards, unshown = decision.cards, _unshown(decision)
    return AuditRecord(
        call,
        card_rows(facts.call_id, cards),
        rule_rows(facts.call_id, cards, unshown),
        evidence_rows(facts.call_id, cards, unshown),
        suggestion_rows(cards),
    )
