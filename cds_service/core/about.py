"""The "About this recommendation" page of a rule, as data: the source attributes ONC's HTI-1
rule asks of a decision support intervention, generated from the knowledge (never written by
hand), so that the page always says what the rule does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .knowledge import KnowledgeBase, Requirement, Rule

#: The FHIR resources the service reads, and what for.
DATA_READ = (
    ("Condition", "diagnoses and symptoms on the problem list or as encounter diagnoses"),
    ("Observation", "coded findings, and the lab results and scores of the measures named"),
    ("Patient", "the birth date, to read an onset given as an age"),
)


def _codes(kb: KnowledgeBase, valuesets: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": vs_id,
            "title": kb.valuesets[vs_id].title,
            "codes": [
                {"system": c.system, "code": c.code, "display": c.display}
                for c in kb.valuesets[vs_id].codes
            ],
        }
        for vs_id in valuesets
        if vs_id in kb.valuesets
    ]


def _requirement(kb: KnowledgeBase, req: Requirement) -> dict[str, Any]:
    out: dict[str, Any] = {"value_sets": list(req.valuesets)}
    if req.criterion:
        out["criterion"] = kb.criteria[req.criterion].title
    if req.within_days is not None:
        out["recorded_within_days"] = req.within_days
    out["or_active"] = req.or_active
    return out


def _logic(rule: Rule) -> dict[str, Any]:
    logic: dict[str, Any] = {}
    if rule.valuesets:
        logic["finding_value_sets"] = list(rule.valuesets)
    if rule.measures:
        logic["measures"] = list(rule.measures)
        logic["direction"] = rule.direction
    for key in ("new_within_days", "min_age_days", "active_for_days"):
        value = getattr(rule, key)
        if value is not None:
            logic[key] = value
    if rule.new_by_recording:
        logic["new_by_recording"] = True
    if rule.unless_themes:
        logic["silent_when_card_of_theme"] = list(rule.unless_themes)
    return logic


def _logic_text(kb: KnowledgeBase, rule: Rule) -> list[str]:
    """When the rule fires, in sentences a clinician can check."""

    def titles(ids: tuple[str, ...]) -> str:
        return ", ".join(kb.valuesets[v].title for v in ids if v in kb.valuesets)

    lines = []
    if rule.valuesets:
        lines.append(f"A record of: {titles(rule.valuesets)}.")
    if rule.measures:
        names = ", ".join(kb.measures[m].title for m in rule.measures)
        lines.append(f"The latest result of {names} reads {rule.direction}.")
    if rule.new_within_days is not None:
        lines.append(
            f"New: onset (or, without one, recording) in the last {rule.new_within_days} days."
        )
    if rule.min_age_days is not None:
        lines.append(f"Known for at least {rule.min_age_days} days.")
    if rule.active_for_days is not None:
        lines.append(f"Active for at least {rule.active_for_days} days, or recurring.")
    for req in rule.requires:
        label = kb.criteria[req.criterion].title if req.criterion else titles(req.valuesets)
        lines.append(f"With: {label}.")
    if rule.unless_themes:
        lines.append(f"Silent when a card of theme {', '.join(rule.unless_themes)} is given.")
    return lines


def _citations(kb: KnowledgeBase, rule: Rule) -> list[dict[str, Any]]:
    art = kb.article
    citations: list[dict[str, Any]] = [
        {
            "kind": art.kind,
            "title": art.title,
            "medical_reviewer": art.medical_reviewer,
            "date": art.last_review,
            "quote": " ".join(rule.source.quote.split()),
        }
    ]
    guideline_ids = [rule.source.guideline] if rule.source.guideline else []
    guideline_ids += [s.guideline for s in kb.orders.for_rule(rule.id)]
    for gid in dict.fromkeys(guideline_ids):
        g = kb.guidelines[gid]
        entry = {
            "kind": "guideline",
            "title": g.title,
            "publisher": g.publisher,
            "date": str(g.year),
        }
        entry["says"] = g.says
        if g.url:
            entry["url"] = g.url
        citations.append(entry)
    return citations


def _suggestions(kb: KnowledgeBase, rule: Rule) -> list[dict[str, Any]]:
    out = []
    for s in kb.orders.for_rule(rule.id):
        order = kb.orders.orders[s.order]
        out.append(
            {
                "id": s.id,
                "label": s.label,
                "action": s.action,
                "resource": "ServiceRequest",
                "intent": s.intent,
                "priority": s.priority,
                "recommended": s.recommended,
                "only_for_measures": list(s.measures),
                "codes": [
                    {
                        "system": c.system,
                        "code": c.code,
                        "display": c.display,
                        "verified_against": kb.orders.sources[c.source].title,
                        "source_url": kb.orders.sources[c.source].url,
                    }
                    for c in order.codes
                ],
                "why": s.says,
            }
        )
    return out


def rule_about(kb: KnowledgeBase, rule: Rule, url: str) -> dict[str, Any]:
    """Everything the page says about one rule."""
    about: Mapping[str, Any] = kb.about
    theme = kb.themes[rule.theme]
    measures = [
        {"id": m, "title": kb.measures[m].title, "loinc": sorted(kb.measures[m].codes)}
        for m in rule.measures
    ]
    return {
        "id": rule.id,
        "url": url,
        "intervention": {
            "title": rule.title,
            "card": {"title": theme.title, "indicator": theme.indicator},
            "summary": rule.summary,
            "action": rule.action,
            "logic": _logic(rule),
            "logic_text": _logic_text(kb, rule),
            "window": rule.source.window,
        },
        "intended_use": about.get("intended_use"),
        "developer": about.get("developer"),
        "funding": about.get("funding"),
        "citations": _citations(kb, rule),
        "last_review": about.get("last_review"),
        "last_revision": about.get("last_revision"),
        "knowledge_version": kb.version,
        "data_read": {
            "fhir_resources": [{"type": t, "for": why} for t, why in DATA_READ],
            "prefetch": {key: p.template for key, p in kb.prefetch.items()},
            "finding_codes": _codes(kb, rule.valuesets),
            "measures": measures,
            "requires": [_requirement(kb, r) for r in rule.requires],
            "required_codes": _codes(kb, tuple(v for r in rule.requires for v in r.valuesets)),
        },
        "suggestions": _suggestions(kb, rule),
        "limitations": list(about.get("limitations", ())),
        "validation": about.get("validation"),
        "fairness": about.get("fairness"),
    }


def topic_codesystem(kb: KnowledgeBase) -> dict[str, Any]:
    """The card-topic CodeSystem of about.yaml as a FHIR R4 CodeSystem resource."""
    system = kb.about["topic_system"]
    return {
        "resourceType": "CodeSystem",
        "id": "card-topic",
        "url": system["url"],
        "name": "CardTopic",
        "title": system["title"],
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "concept": [
            {"code": code, "display": c["display"], "definition": c["definition"]}
            for code, c in system["concepts"].items()
        ],
    }
