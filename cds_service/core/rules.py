"""Evaluate the knowledge's rules against the patient's findings. Generic: no rule is named here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .findings import Finding, Measurement, PatientFindings
from .knowledge import KnowledgeBase, Requirement, Rule

Evidence = Finding | Measurement


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


def age_in_days(date: dt.date | None, today: dt.date) -> int | None:
    return None if date is None else (today - date).days


def is_recent(date: dt.date | None, within_days: int | None, today: dt.date) -> bool:
    """Within the window; a window of None accepts any finding, dated or not."""
    if within_days is None:
        return True
    age = age_in_days(date, today)
    return age is not None and age <= within_days


def _meets(
    requirement: Requirement, trigger: Evidence, findings: list[Finding], today: dt.date
) -> list[Finding]:
    """The findings that satisfy one requirement of a rule for one triggering finding."""
    met = []
    for finding in findings:
        if not finding.valuesets.intersection(requirement.valuesets):
            continue
        if not is_recent(finding.date, requirement.within_days, today):
            continue
        if requirement.after_finding and not _strictly_after(finding, trigger):
            continue
        met.append(finding)
    return met


def _strictly_after(later: Finding, earlier: Evidence) -> bool:
    """Recorded after the trigger (symptoms that recur or persist after a known diagnosis)."""
    if later.reference == earlier.reference or later.date is None:
        return False
    return earlier.date is None or later.date > earlier.date


def _requirements_met(
    rule: Rule, trigger: Evidence, findings: list[Finding], today: dt.date
) -> list[Finding] | None:
    """The context findings for a trigger, or None when a requirement is not met."""
    context: list[Finding] = []
    for requirement in rule.requires:
        met = _meets(requirement, trigger, findings, today)
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
            and is_recent(m.date, rule.new_within_days, today)
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
        coded = [f for f in findings if f.valuesets.intersection(rule.valuesets)]
        triggers = [f for f in coded if is_recent(f.date, rule.new_within_days, today)]
        older = [f for f in coded if f not in triggers] if rule.older == "context" else []
    evidence: list[Evidence] = []
    context: list[Finding] = []
    for trigger in triggers:
        met = _requirements_met(rule, trigger, findings, today)
        if met is None:
            continue
        evidence.append(trigger)
        context.extend(f for f in met if f not in context and f not in evidence)
    notes = [
        OlderFinding(rule, f)
        for f in older
        if _requirements_met(rule, f, findings, today) is not None
    ]
    match = Match(rule, tuple(evidence), tuple(context)) if evidence else None
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
    new_refs = {e.reference for m in kept for e in m.evidence}
    seen: set[str] = set()
    unique_older = []
    for note in older:
        if note.finding.reference not in new_refs | seen:
            seen.add(note.finding.reference)
            unique_older.append(note)
    return Evaluation(tuple(kept), tuple(unique_older))
