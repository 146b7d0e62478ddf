"""Evaluate the knowledge's rules against the patient's findings. Generic: no rule is named here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .findings import Finding, Measurement, PatientFindings
from .knowledge import KnowledgeBase, Requirement, Rule

Evidence = Finding | Measurement
#: clinicalStatus codes that say a condition is current (condition-clinical "active" and children)
ACTIVE_STATUSES = frozenset({"active", "recurrence", "relapse"})


@dataclass(frozen=True)
class Match:
    """A rule that fired: the findings that triggered it and those that met its requirements."""

    rule: Rule
    evidence: tuple[Evidence, ...]
    context: tuple[Finding, ...]


@dataclass(frozen=True)
class OlderFinding:
    """A red-flag finding that is still active but not new: worth one line, not an alarm."""

    rule: Rule
    finding: Finding


@dataclass(frozen=True)
class Evaluation:
    matches: tuple[Match, ...]
    older: tuple[OlderFinding, ...]


def is_recent(item: Evidence, within_days: int | None, today: dt.date) -> bool:
    """Any of the item's dates (onset or recording) within the window; None accepts anything."""
    if within_days is None:
        return True
    return any((today - dated.day).days <= within_days for dated in item.dates)


def is_established(item: Evidence, min_age_days: int | None, today: dt.date) -> bool:
    """Known for at least `min_age_days` (an undated diagnosis is taken as established)."""
    if min_age_days is None or not item.dates:
        return True
    return (today - min(d.day for d in item.dates)).days >= min_age_days


def _meets(requirement: Requirement, finding: Finding, today: dt.date) -> bool:
    if not finding.valuesets.intersection(requirement.valuesets):
        return False
    if requirement.or_active and finding.clinical_status in ACTIVE_STATUSES:
        return True
    return is_recent(finding, requirement.within_days, today)


def _context_for(
    rule: Rule, trigger: Evidence, findings: list[Finding], today: dt.date
) -> list[Finding] | None:
    """The other findings meeting each requirement of a rule, or None when one is not met."""
    context: list[Finding] = []
    for requirement in rule.requires:
        met = [
            f
            for f in findings
            if f.reference != trigger.reference and _meets(requirement, f, today)
        ]
        if not met:
            return None
        context.extend(f for f in met if f not in context)
    return context


def _latest_measurements(
    rule: Rule, measurements: list[Measurement], today: dt.date
) -> list[Measurement]:
    """The latest result of each measure in the window, when it reads in the rule's direction."""
    hits = []
    for measure_id in rule.measures:
        recent = [
            m
            for m in measurements
            if m.measure == measure_id
            and m.date is not None
            and is_recent(m, rule.new_within_days, today)
        ]
        if not recent:
            continue
        latest = max(recent, key=lambda m: (m.date, m.reference))
        if latest.reading.flag == rule.direction:
            hits.append(latest)
    return hits


def _evaluate_rule(
    rule: Rule, data: PatientFindings, today: dt.date
) -> tuple[Match | None, list[OlderFinding]]:
    findings = data.findings
    if rule.measures:
        triggers: list[Evidence] = list(_latest_measurements(rule, data.measurements, today))
        older: list[Finding] = []
    else:
        coded = [
            f
            for f in findings
            if f.valuesets.intersection(rule.valuesets)
            and is_established(f, rule.min_age_days, today)
        ]
        triggers = [f for f in coded if is_recent(f, rule.new_within_days, today)]
        older = [f for f in coded if f not in triggers] if rule.older == "context" else []
    evidence: list[Evidence] = []
    context: list[Finding] = []
    for trigger in triggers:
        met = _context_for(rule, trigger, findings, today)
        if met is not None:
            evidence.append(trigger)
            context.extend(f for f in met if f not in context)
    evidence_refs = {e.reference for e in evidence}
    shown = tuple(f for f in context if f.reference not in evidence_refs)
    match = Match(rule, tuple(evidence), shown) if evidence else None
    notes = [
        OlderFinding(rule, f) for f in older if _context_for(rule, f, findings, today) is not None
    ]
    return match, notes


def evaluate(kb: KnowledgeBase, data: PatientFindings, today: dt.date) -> Evaluation:
    """Every rule that fires, in card order, and the older red flags worth a line."""
    matches: list[Match] = []
    older: list[OlderFinding] = []
    for rule in kb.rules:
        match, notes = _evaluate_rule(rule, data, today)
        if match:
            matches.append(match)
        older.extend(notes)
    fired_themes = {m.rule.theme for m in matches}
    kept = [m for m in matches if not fired_themes.intersection(m.rule.unless_themes)]
    seen = {e.reference for m in kept for e in m.evidence}
    unique_older = []
    for note in older:
        if note.finding.reference not in seen:
            seen.add(note.finding.reference)
            unique_older.append(note)
    return Evaluation(tuple(kept), tuple(unique_older))
