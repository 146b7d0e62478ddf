"""Orders and card suggestions, compiled from knowledge/orders.yaml and rendered as CDS Hooks
Suggestions whose actions carry a complete FHIR R4 ServiceRequest (status draft).

A suggestion's uuid is derived from its card's uuid and the suggestion's id (uuid5), so that it is
unique per card, and feedback naming it can be traced to the suggestion without a lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import uuid_utils

SYSTEMS = {
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "cpt": "http://www.ama-assn.org/go/cpt",
}
#: Namespace of suggestion uuids: uuid5(NAMESPACE, f"{card uuid}/{suggestion id}").
SUGGESTION_NAMESPACE = uuid.UUID("6f1d2b0c-8a3e-5c1f-9b7d-4e2a6c8d0f13")
_NAMESPACE = uuid_utils.UUID(str(SUGGESTION_NAMESPACE))
#: FHIR R4 ServiceRequest.reasonReference targets.
REASON_TYPES = ("Condition", "Observation", "DiagnosticReport", "DocumentReference")


@dataclass(frozen=True)
class OrderCoding:
    system: str  # URI
    code: str
    display: str
    source: str  # an id of code_sources


@dataclass(frozen=True)
class Order:
    id: str
    text: str
    category: OrderCoding
    codes: tuple[OrderCoding, ...]


@dataclass(frozen=True)
class Suggestion:
    id: str
    label: str
    order: str
    action: str
    intent: str
    priority: str
    recommended: bool
    group: str | None
    rules: tuple[str, ...]
    measures: tuple[str, ...]
    guideline: str
    says: str


@dataclass(frozen=True)
class CodeSource:
    id: str
    title: str
    url: str


@dataclass(frozen=True)
class OrderCatalog:
    sources: Mapping[str, CodeSource]
    orders: Mapping[str, Order]
    suggestions: tuple[Suggestion, ...]

    def for_rule(self, rule_id: str) -> tuple[Suggestion, ...]:
        return tuple(s for s in self.suggestions if rule_id in s.rules)


EMPTY_CATALOG = OrderCatalog({}, {}, ())


def _coding(doc: Mapping[str, Any]) -> OrderCoding:
    return OrderCoding(SYSTEMS[doc["system"]], str(doc["code"]), doc["display"], doc["source"])


def compile_orders(
    doc: Mapping[str, Any],
    rule_ids: Iterable[str],
    measure_ids: Iterable[str],
    guideline_ids: Iterable[str],
) -> tuple[OrderCatalog, list[str]]:
    """The catalogue, and every reference problem found (unknown rule, order, source...)."""
    problems: list[str] = []
    sources = {k: CodeSource(k, v["title"], v["url"]) for k, v in doc["code_sources"].items()}
    orders = {
        oid: Order(oid, o["text"], _coding(o["category"]), tuple(_coding(c) for c in o["codes"]))
        for oid, o in doc["orders"].items()
    }
    for order in orders.values():
        for coding in (order.category, *order.codes):
            if coding.source not in sources:
                problems.append(f"orders.yaml: {order.id}: unknown code source {coding.source!r}")
    rules, measures, guidelines = set(rule_ids), set(measure_ids), set(guideline_ids)
    suggestions = []
    for sid, s in doc["suggestions"].items():
        where = f"orders.yaml: suggestion {sid}"
        if s["order"] not in orders:
            problems.append(f"{where}: unknown order {s['order']!r}")
        problems += [f"{where}: unknown rule {r!r}" for r in s["rules"] if r not in rules]
        problems += [
            f"{where}: unknown measure {m!r}" for m in s.get("measures", ()) if m not in measures
        ]
        if s["source"]["guideline"] not in guidelines:
            problems.append(f"{where}: unknown guideline {s['source']['guideline']!r}")
        suggestions.append(
            Suggestion(
                id=sid,
                label=s["label"],
                order=s["order"],
                action=s["action"],
                intent=s["intent"],
                priority=s["priority"],
                recommended=s.get("recommended", False),
                group=s.get("group"),
                rules=tuple(s["rules"]),
                measures=tuple(s.get("measures", ())),
                guideline=s["source"]["guideline"],
                says=" ".join(s["source"]["says"].split()),
            )
        )
    return OrderCatalog(sources, orders, tuple(suggestions)), problems


def suggestion_uuid(card_uuid: str, suggestion_id: str) -> str:
    """The uuid of a suggestion on one card: stable for that card, unique across cards."""
    name = f"{card_uuid}/{suggestion_id}"
    try:
        return str(uuid_utils.uuid5(_NAMESPACE, name))
    except TypeError:  # a name UTF-8 cannot encode (a lone surrogate): the standard error
        return str(uuid.uuid5(SUGGESTION_NAMESPACE, name))


@dataclass(frozen=True)
class OrderContext:
    """What a ServiceRequest takes from the call: the patient and, where the hook has one, the
    encounter."""

    patient_id: str
    encounter_id: str | None = None


def _coding_json(c: OrderCoding) -> dict[str, str]:
    return {"system": c.system, "code": c.code, "display": c.display}


def reason_references(references: Iterable[str]) -> list[dict[str, str]]:
    """reasonReference entries for the evidence resources a ServiceRequest may name."""
    out: dict[str, dict[str, str]] = {}
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if rtype in REASON_TYPES and rid and "/" not in rid:
            out.setdefault(ref, {"reference": ref})
    return list(out.values())


def service_request(
    order: Order, suggestion: Suggestion, context: OrderContext, reasons: Sequence[str]
) -> dict[str, Any]:
    """A complete FHIR R4 ServiceRequest, status draft, for the suggestion's order."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": suggestion.intent,
        "priority": suggestion.priority,
        "category": [{"coding": [_coding_json(order.category)]}],
        "code": {"coding": [_coding_json(c) for c in order.codes], "text": order.text},
        "subject": {"reference": f"Patient/{context.patient_id}"},
    }
    if context.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{context.encounter_id}"}
    reason = reason_references(reasons)
    if reason:
        resource["reasonReference"] = reason
    return resource


def render_suggestion(
    catalog: OrderCatalog,
    suggestion: Suggestion,
    card_uuid: str,
    context: OrderContext,
    reasons: Sequence[str],
) -> dict[str, Any]:
    """One CDS Hooks Suggestion with its one `create` action."""
    order = catalog.orders[suggestion.order]
    out: dict[str, Any] = {
        "label": suggestion.label,
        "uuid": suggestion_uuid(card_uuid, suggestion.id),
    }
    if suggestion.recommended:
        out["isRecommended"] = True
    out["actions"] = [
        {
            "type": suggestion.action,
            "description": f"Draft order: {order.text} ({suggestion.priority})",
            "resource": service_request(order, suggestion, context, reasons),
        }
    ]
    return out


def selection_behavior(suggestions: Sequence[Suggestion]) -> str:
    """`at-most-one` when the suggestions are alternatives of one group, else `any`."""
    groups = {s.group for s in suggestions}
    if len(suggestions) > 1 and len(groups) == 1 and None not in groups:
        return "at-most-one"
    return "any"
