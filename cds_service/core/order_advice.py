"""Advice on a hook's draft orders (order-select, order-sign): which drafts the knowledge
recognises, and the order rules of knowledge/order-advice.yaml on them, given the evaluation of
the patient's findings. Pure: data in, cards out.

Draft orders are read leniently (clients send them while an order is being composed): a Bundle
without `type`, an entry without a resource, a MedicationRequest without a medication, a
ServiceRequest with text only. What cannot be read is skipped, never an error.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cards import (
    CardContext,
    CardSuggestion,
    RenderedCard,
    Traced,
    card_suggestions,
    concept_name,
    escape_text,
    evidence_text,
    references_of,
    render_offers,
    shown_references,
)
from .findings import PatientFindings
from .knowledge import KnowledgeBase
from .order_kinds import OrderKind, OrderRule
from .orders import suggestion_uuid
from .rules import Evaluation, Match

ROUTINE = "routine"


@dataclass(frozen=True)
class DraftOrder:
    """One draft order the knowledge recognises."""

    reference: str  # "Type/id", or "Type" when it has no id
    resource: Mapping[str, Any]
    kind: OrderKind
    display: str
    priority: str  # the draft's priority, "routine" when not given

    @property
    def has_id(self) -> bool:
        return "/" in self.reference


def _codings(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    concept = (
        resource.get("code")
        if resource.get("resourceType") == "ServiceRequest"
        else (resource.get("medicationCodeableConcept"))
    )
    if not isinstance(concept, Mapping):
        return []
    codings = concept.get("coding")
    return [c for c in codings if isinstance(c, Mapping)] if isinstance(codings, list) else []


def _display(resource: Mapping[str, Any], kind: OrderKind, coding: Mapping[str, Any]) -> str:
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    text = concept.get("text") if isinstance(concept, Mapping) else None
    for value in (text, coding.get("display")):
        if isinstance(value, str) and value.strip():
            return value
    return kind.title


def recognise(kb: KnowledgeBase, resource: object) -> DraftOrder | None:
    """The draft as an order the knowledge knows, or None (not readable, or not recognised)."""
    if not isinstance(resource, Mapping):
        return None
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return None
    advice = kb.order_advice
    for coding in _codings(resource):
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            continue
        kind_id = advice.index.get((system, code.strip()))
        if kind_id is None or rtype not in advice.kinds[kind_id].resource_types:
            continue
        kind = advice.kinds[kind_id]
        rid = resource.get("id")
        reference = f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype
        priority = resource.get("priority")
        return DraftOrder(
            reference,
            resource,
            kind,
            _display(resource, kind, coding),
            priority if isinstance(priority, str) else ROUTINE,
        )
    return None


def draft_resources(draft_orders: object) -> list[Mapping[str, Any]]:
    """The resources of a draftOrders Bundle, read leniently (no `type` needed)."""
    if not isinstance(draft_orders, Mapping):
        return []
    entries = draft_orders.get("entry")
    if not isinstance(entries, list):
        return []
    return [
        e["resource"]
        for e in entries
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]


def draft_orders(
    kb: KnowledgeBase, context: Mapping[str, Any], data: Mapping[str, str]
) -> list[DraftOrder]:
    """The recognised draft orders of the call; with `selections`, only the selected ones."""
    bundle_field = next((name for name, shape in data.items() if shape == "bundle"), None)
    if bundle_field is None:
        return []
    orders = [o for r in draft_resources(context.get(bundle_field)) if (o := recognise(kb, r))]
    selection_field = next((n for n, shape in data.items() if shape == "references"), None)
    if selection_field is not None:
        selected = context.get(selection_field)
        chosen = (
            {s for s in selected if isinstance(s, str)} if isinstance(selected, list) else set()
        )
        orders = [o for o in orders if o.reference in chosen]
    return orders


def _concerns(rule: OrderRule, order: DraftOrder) -> bool:
    if order.kind.id not in rule.kinds:
        return False
    if order.kind.imaging and rule.imaging_priorities:
        return order.priority in rule.imaging_priorities
    return True


def _red_flags(evaluation: Evaluation, themes: Iterable[str]) -> list[Match]:
    wanted = set(themes)
    return [m for m in evaluation.all_matches if m.rule.theme in wanted]


def _episode_is_young(rule: OrderRule, findings: PatientFindings, today: dt.date) -> bool:
    """The back-pain episode began within the rule's window: every such finding has a start day
    in it (a finding without a readable start, or an older one, keeps the rule quiet)."""
    wanted = frozenset(rule.episode_valuesets)
    episode = [f for f in findings.findings if not f.valuesets.isdisjoint(wanted)]
    if not episode or rule.episode_within_days is None:
        return False
    for finding in episode:
        start = finding.when or min((d.day for d in finding.dates), default=None)
        if start is None or (today - start).days > rule.episode_within_days:
            return False
    return True


def _order_line(order: DraftOrder) -> str:
    return (
        f"- **{escape_text(order.display)}** ({escape_text(order.kind.title)})"
        f" · {escape_text(order.reference, 80)}"
    )


def _why(kb: KnowledgeBase, rule: OrderRule) -> list[str]:
    lines = ["", "**Why**", "", f"> {rule.says}"]
    for gid in rule.guidelines:
        g = kb.guidelines[gid]
        lines.append(f"\n- {g.short}: {g.says}")
    return lines


def _source(kb: KnowledgeBase, rule: OrderRule) -> dict[str, Any]:
    g = kb.guidelines[rule.guidelines[0]]
    source: dict[str, Any] = {
        "label": f"{g.short}; {kb.article.title} (reviewed {kb.article.last_review})"
    }
    if g.url:
        source["url"] = g.url
    return source


def _summary(rule: OrderRule, orders: Sequence[DraftOrder]) -> str:
    first = orders[0].display
    if len(orders) > 1:
        first += f" (+{len(orders) - 1} more)"
    text = rule.summary.format(order=first)
    return text if len(text) < 140 else text[:136] + "..."


def _update_priority(order: DraftOrder, card_uuid: str, rule: OrderRule) -> dict[str, Any]:
    resource = copy.deepcopy(dict(order.resource))
    resource["priority"] = "stat"
    sid = f"{rule.id}:stat:{order.reference}"
    return {
        "label": rule.suggestion_label.format(order=order.display)[:140],
        "uuid": suggestion_uuid(card_uuid, sid),
        "isRecommended": True,
        "actions": [
            {
                "type": "update",
                "description": f"Set the priority of {order.reference} to stat",
                "resource": resource,
            }
        ],
    }


def _delete(order: DraftOrder, card_uuid: str, rule: OrderRule) -> dict[str, Any]:
    sid = f"{rule.id}:delete:{order.reference}"
    return {
        "label": rule.suggestion_label.format(order=order.display)[:140],
        "uuid": suggestion_uuid(card_uuid, sid),
        "actions": [
            {
                "type": "delete",
                "description": f"Withdraw the draft order {order.reference}",
                "resourceId": [order.reference],
            }
        ],
    }


def _routine_card(
    kb: KnowledgeBase,
    rule: OrderRule,
    orders: list[DraftOrder],
    flags: list[Match],
    new_uuid: Callable[[], str],
    context: CardContext,
) -> RenderedCard:
    card_uuid = new_uuid()
    lines = [
        "**Orders concerned**",
        "",
        *[_order_line(o) for o in orders],
        "",
        "**Red flags, new or recorded recently**",
        "",
    ]
    evidence: list[str] = []
    shown: list[str] = []
    for match in flags:
        for item in match.evidence:
            lines.append(f"- **{concept_name(kb, match.rule, item)}**: {evidence_text(item)}")
            evidence.extend(references_of(item))
            shown.extend(shown_references(item))
    lines += ["", f"**Action:** {rule.action}", *_why(kb, rule)]
    suggestions: list[dict[str, Any]] = []
    ids: list[tuple[str, str]] = []
    for order in orders:
        if order.kind.imaging and order.has_id:
            s = _update_priority(order, card_uuid, rule)
            suggestions.append(s)
            ids.append((s["uuid"], f"{rule.id}:stat"))
    if any(not o.kind.imaging for o in orders):
        offered = card_suggestions(kb, flags)
        own = render_offers(kb, offered, card_uuid, context)
        suggestions += own
        ids += [(s["uuid"], o.suggestion.id) for o, s in zip(offered, own, strict=True)]
    reasons = [
        {"system": c.system, "code": c.code, "display": c.display}
        for c in kb.themes["emergency"].override_reasons
    ]
    card = _card_json(kb, rule, orders, card_uuid, lines, suggestions, reasons)
    return _order_card(card, rule, evidence, ids, shown)


def _order_card(
    card: dict[str, Any],
    rule: OrderRule,
    evidence: list[str],
    ids: Iterable[tuple[str, str]],
    shown: Iterable[str] = (),
) -> RenderedCard:
    """A card on draft orders, traced as the audit records it: under its order rule's id (as
    its theme and its one rule), with the red-flag evidence it lists (`shown`: the references
    its lines name) and its suggestions."""
    return RenderedCard(
        card,
        rule.id,
        rule.indicator,
        (rule.id,),
        tuple(Traced(rule.id, "evidence", ref) for ref in dict.fromkeys(evidence)),
        tuple(CardSuggestion(uuid, sid, (rule.id,)) for uuid, sid in ids),
        tuple(dict.fromkeys(shown)),
    )


def _card_json(
    kb: KnowledgeBase,
    rule: OrderRule,
    orders: list[DraftOrder],
    card_uuid: str,
    lines: list[str],
    suggestions: list[dict[str, Any]],
    override_reasons: list[dict[str, str]],
) -> dict[str, Any]:
    """An order card as CDS Hooks JSON: its words, source, suggestions and override reasons."""
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": _summary(rule, orders),
        "indicator": rule.indicator,
        "detail": "\n".join(lines).strip() + "\n",
        "source": _source(kb, rule),
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    card["overrideReasons"] = override_reasons
    return card


def _early_imaging_card(
    kb: KnowledgeBase, rule: OrderRule, orders: list[DraftOrder], new_uuid: Callable[[], str]
) -> RenderedCard:
    card_uuid = new_uuid()
    lines = [
        "**Orders concerned**",
        "",
        *[_order_line(o) for o in orders],
        "",
        "No red flag is recorded, and this episode of back pain began less than six weeks ago.",
        "",
        f"**Action:** {rule.action}",
        *_why(kb, rule),
    ]
    suggestions = [_delete(o, card_uuid, rule) for o in orders if o.has_id]
    reasons = [
        {"system": rule.override_system, "code": c, "display": d} for c, d in rule.override_reasons
    ]
    card = _card_json(kb, rule, orders, card_uuid, lines, suggestions, reasons)
    ids = [(s["uuid"], f"{rule.id}:delete") for s in suggestions]
    return _order_card(card, rule, [], ids)


def advise_on_orders(
    kb: KnowledgeBase,
    orders: list[DraftOrder],
    evaluation: Evaluation,
    findings: PatientFindings,
    today: dt.date,
    new_uuid: Callable[[], str],
    context: CardContext,
) -> list[RenderedCard]:
    """The order rules in knowledge order; each gives at most one card about the drafts it
    concerns. Orders no rule concerns give nothing."""
    cards: list[RenderedCard] = []
    for rule in kb.order_advice.rules:
        concerned = [o for o in orders if _concerns(rule, o)]
        if not concerned:
            continue
        flags = _red_flags(evaluation, rule.red_flag_themes)
        if rule.episode_valuesets:
            if flags or evaluation.older or not _episode_is_young(rule, findings, today):
                continue
            cards.append(_early_imaging_card(kb, rule, concerned, new_uuid))
        elif flags:
            cards.append(_routine_card(kb, rule, concerned, flags, new_uuid, context))
    return cards
