"""Evaluate the knowledge's rules against the patient's findings. Generic: no rule is named here.

The cost is linear in the number of findings: each requirement is met (or not) by a list of
findings computed once per call, and each rule reads its findings once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from .findings import Dated, Finding, Measurement, PatientFindings
from .knowledge import Coding, KnowledgeBase, Requirement, ReviewKind, Rule, RuleSource

Evidence = Finding | Measurement


@dataclass(frozen=True)
class Match:
    """A rule that fired: the findings that triggered it and those that met its requirements."""

    rule: Rule
    evidence: tuple[Evidence, ...]
    context: tuple[Evidence, ...]


@dataclass(frozen=True)
class OlderFinding:
    """A red-flag finding that is still active but not new: worth one line, not an alarm."""

    rule: Rule
    finding: Finding


@dataclass(frozen=True)
class Evaluation:
    matches: tuple[Match, ...]
    older: tuple[OlderFinding, ...]
    #: red-flag records to verify or read (onset unknown, unreadable, free text): never an alarm
    review: tuple[Match, ...] = ()

    @property
    def all_matches(self) -> tuple[Match, ...]:
        """The rule matches and the review lines, in card order of their themes."""
        return self.matches + self.review


def is_recent(item: Evidence, within_days: int | None, today: dt.date) -> bool:
    """Any of the item's dates (onset or recording) within the window; None accepts anything."""
    if within_days is None:
        return True
    return any((today - dated.day).days <= within_days for dated in item.dates)


def is_new(item: Evidence, within_days: int | None, today: dt.date) -> bool:
    """New: the day that decides (onset, or recording without an onset) is in the window.

    An imprecise onset (a year, a month, an age in years) is new only when all of it is.
    """
    if within_days is None:
        return True
    if isinstance(item, Measurement):
        return is_recent(item, within_days, today)
    first = item.since or item.when
    return first is not None and (today - first).days <= within_days


def is_undetermined(item: Finding, within_days: int | None, today: dt.date) -> bool:
    """Whether it cannot be told if a finding is new.

    No readable onset and no old recording; or an imprecise onset that reaches into the window
    and begins before it ("2026", "46 years old"): it may be new, and it may be old.
    """
    if within_days is None:
        return False
    if item.when is not None:
        return item.since is not None and (today - item.when).days <= within_days
    return item.not_after is None or (today - item.not_after).days <= within_days


def is_established(item: Evidence, min_age_days: int | None, today: dt.date) -> bool:
    """Known for at least `min_age_days` (an undated diagnosis is taken as established)."""
    if min_age_days is None or not item.dates:
        return True
    return (today - min(d.day for d in item.dates)).days >= min_age_days


def is_persistent(rule: Rule, item: Finding, today: dt.date) -> bool:
    """Active by its clinical status for at least `active_for_days`, or (if allowed) recurring."""
    if rule.or_recurring and item.recurring:
        return True
    if not item.active or not item.dates:
        return False
    return (today - min(d.day for d in item.dates)).days >= (rule.active_for_days or 0)


def _day(item: Finding) -> dt.date | None:
    """The day an episode began: its onset (or recording), else its earliest date."""
    return item.when or min((d.day for d in item.dates), default=None)


def episode_count(rule: Rule, current: list[Finding], past: list[Finding], today: dt.date) -> int:
    """Separate episodes of the rule's finding in its window: dates `apart_days` or more apart."""
    if rule.episodes is None:
        return 0
    wanted = frozenset(rule.valuesets)
    days = sorted(
        day
        for f in [*current, *past]
        if not f.valuesets.isdisjoint(wanted)
        and (day := _day(f)) is not None
        and (today - day).days <= rule.episodes.within_days
    )
    count, last = 0, None
    for day in days:
        if last is None or (day - last).days >= rule.episodes.apart_days:
            count += 1
        last = day
    return count


def _meets(requirement: Requirement, finding: Finding, today: dt.date) -> bool:
    if not finding.valuesets.intersection(requirement.valuesets):
        return False
    if requirement.or_active and finding.active:
        return True
    if requirement.new:
        return is_new(finding, requirement.within_days, today)
    return is_recent(finding, requirement.within_days, today)


def age_in_years(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _age_finding(data: PatientFindings, years: int) -> Finding:
    """The patient's age as a line of context (from Patient.birthDate)."""
    assert data.birth_date is not None
    return Finding(
        references=(data.patient_reference,),
        resource_type="Patient",
        valuesets=frozenset(),
        coding=Coding("Patient.birthDate", f"{years} years", f"Age {years}"),
        dates=(Dated("born", data.birth_date),),
    )


class _Requirements:
    """The findings, results or age meeting each requirement, computed once per call."""

    def __init__(self, data: PatientFindings, today: dt.date):
        self._data = data
        self._today = today
        self._met: dict[Requirement, list[Evidence]] = {}
        self._newest: dict[str, list[Measurement]] | None = None
        #: the latest recent result of a measure, by (measure, window)
        self._recent: dict[tuple[str, int | None], Measurement | None] = {}

    def met(self, requirement: Requirement) -> list[Evidence]:
        if requirement not in self._met:
            self._met[requirement] = self._compute(requirement)
        return self._met[requirement]

    def _compute(self, requirement: Requirement) -> list[Evidence]:
        if requirement.any_of:
            found: dict[int, Evidence] = {}
            for part in requirement.any_of:
                for item in self.met(part):
                    found.setdefault(id(item), item)
            return list(found.values())
        if requirement.age_over is not None or requirement.age_under is not None:
            return self._age(requirement)
        if requirement.measures:
            return self.latest(requirement.measures, requirement.direction, requirement.within_days)
        pool = self._data.findings
        if requirement.include_past:
            pool = pool + self._data.past
        met = [f for f in pool if _meets(requirement, f, self._today)]
        if requirement.min_age_days is not None and met:
            earliest = min((d.day for f in met for d in f.dates), default=None)
            if earliest is not None and (self._today - earliest).days < requirement.min_age_days:
                return []
        return list(met)

    def latest(
        self, measures: tuple[str, ...], direction: str | None, within_days: int | None
    ) -> list[Measurement]:
        """The latest result of each measure in the window, when it reads in `direction` (from the
        results sorted once per call, newest first)."""
        hits = []
        for measure_id in measures:
            latest = self._latest_recent(measure_id, within_days)
            if latest is not None and latest.reading.flag == direction:
                hits.append(latest)
        return hits

    def _latest_recent(self, measure_id: str, within_days: int | None) -> Measurement | None:
        """The newest result of a measure that `is_recent` in the window, or None."""
        key = (measure_id, within_days)
        if key not in self._recent:
            if self._newest is None:
                self._newest = _newest_first(self._data.measurements)
            self._recent[key] = next(
                (
                    m
                    for m in self._newest.get(measure_id, ())
                    if is_recent(m, within_days, self._today)
                ),
                None,
            )
        return self._recent[key]

    def _age(self, requirement: Requirement) -> list[Evidence]:
        if self._data.birth_date is None:
            return []
        years = age_in_years(self._data.birth_date, self._today)
        if requirement.age_over is not None and years <= requirement.age_over:
            return []
        if requirement.age_under is not None and years >= requirement.age_under:
            return []
        return [_age_finding(self._data, years)]

    def context_for(self, rule: Rule, trigger: Evidence) -> list[Evidence] | None:
        """The other evidence meeting each requirement of a rule, or None when one is not met
        (or one of its `none_of` is met). What its `explain` entries find is added."""
        context: dict[int, Evidence] = {}
        for requirement in rule.requires:
            met = self.met(requirement)
            others = [f for f in met[:2] if f is not trigger]
            if not others:
                return None
            for finding in met:
                if finding is not trigger:
                    context.setdefault(id(finding), finding)
        for requirement in rule.none_of:
            if any(f is not trigger for f in self.met(requirement)):
                return None
        for requirement in rule.explain:
            for finding in self.met(requirement):
                if finding is not trigger:
                    context.setdefault(id(finding), finding)
        return list(context.values())


def _newest_first(measurements: list[Measurement]) -> dict[str, list[Measurement]]:
    """The dated results of each measure, newest first by (date, reference); among equals the
    first given comes first, as `max` would pick it."""
    by_measure: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.date is not None:
            by_measure.setdefault(m.measure, []).append(m)
    return {
        measure: sorted(items, key=lambda m: (m.date, m.reference), reverse=True)
        for measure, items in by_measure.items()
    }


@dataclass
class _RuleResult:
    match: Match | None
    older: list[Finding]
    undetermined: list[tuple[Finding, tuple[Evidence, ...]]]


def _coded_findings(rule: Rule, findings: Iterable[Finding], today: dt.date) -> list[Finding]:
    wanted = frozenset(rule.valuesets)
    return [
        f
        for f in findings
        if not f.valuesets.isdisjoint(wanted) and is_established(f, rule.min_age_days, today)
    ]


def _evaluate_rule(
    rule: Rule, data: PatientFindings, req: _Requirements, today: dt.date
) -> _RuleResult:
    older: list[Finding] = []
    undetermined: list[Finding] = []
    triggers: list[Evidence] = list(req.latest(rule.measures, rule.direction, rule.new_within_days))
    if rule.valuesets:
        pool = data.findings + data.past if rule.include_past else data.findings
        for finding in _coded_findings(rule, pool, today):
            if rule.active_for_days is not None or rule.or_recurring or rule.episodes:
                if is_persistent(rule, finding, today):
                    triggers.append(finding)
            elif is_new(finding, rule.new_within_days, today) or (
                rule.new_by_recording and is_recent(finding, rule.new_within_days, today)
            ):
                triggers.append(finding)
            elif rule.older != "context":
                continue
            elif is_undetermined(finding, rule.new_within_days, today):
                undetermined.append(finding)
            else:
                older.append(finding)
    context: dict[int, Evidence] = {}
    if rule.episodes is not None and not triggers:
        coded = _coded_findings(rule, data.findings, today)
        if episode_count(rule, coded, data.past, today) >= rule.episodes.count:
            triggers = list(coded)
            wanted = frozenset(rule.valuesets)
            for past in data.past:
                if not past.valuesets.isdisjoint(wanted):
                    context.setdefault(id(past), past)
    evidence: list[Evidence] = []
    for trigger in triggers:
        met = req.context_for(rule, trigger)
        if met is not None:
            evidence.append(trigger)
            for finding in met:
                context.setdefault(id(finding), finding)
    evidence_refs = {e.reference for e in evidence}
    shown = tuple(f for f in context.values() if f.reference not in evidence_refs)
    match = Match(rule, tuple(evidence), shown) if evidence else None
    return _RuleResult(
        match,
        [f for f in older if req.context_for(rule, f) is not None],
        [(f, tuple(c)) for f in undetermined if (c := req.context_for(rule, f)) is not None],
    )


def _review_rule(rule: Rule, review: ReviewKind, concept: str) -> Rule:
    """The rule as a line to verify or read: its theme, words and action are the review's."""
    return dataclasses.replace(
        rule,
        id=f"{rule.id}:{review.kind}",
        theme=review.theme,
        summary=review.summary.format(concept=concept),
        action=review.action,
        unless_themes=(),
        source=RuleSource(
            quote=rule.source.quote, guideline=rule.source.guideline, window=review.why
        ),
    )


def _concept(kb: KnowledgeBase, rule: Rule, finding: Finding) -> str:
    for vs_id in rule.valuesets:
        if vs_id in finding.valuesets:
            return kb.valuesets[vs_id].title
    return rule.title


def _review_matches(
    kb: KnowledgeBase,
    red_flag_rules: list[Rule],
    undetermined: list[tuple[Rule, Finding, tuple[Evidence, ...]]],
    to_review: list[Finding],
    req: _Requirements,
    seen: set[str],
) -> list[Match]:
    """One line per red-flag record to verify or read, under the first red-flag rule it fits."""
    items: list[tuple[Rule, Finding, tuple[Evidence, ...], str]] = [
        (rule, f, ctx, "onset-unknown") for rule, f, ctx in undetermined
    ]
    for finding in to_review:
        for rule in red_flag_rules:
            if finding.valuesets.isdisjoint(rule.valuesets):
                continue
            ctx = req.context_for(rule, finding)
            if ctx is not None:
                kind = "unreadable" if finding.review == "unreadable" else "text"
                items.append((rule, finding, tuple(ctx), kind))
                break
    matches = []
    for rule, finding, ctx, kind in items:
        if finding.reference in seen:
            continue
        seen.add(finding.reference)
        review_rule = _review_rule(rule, kb.review[kind], _concept(kb, rule, finding))
        matches.append(Match(review_rule, (finding,), ctx))
    return matches


def _present(data: PatientFindings) -> frozenset[str]:
    """The value sets of every finding (current or past) and the measures of every result."""
    present: set[str] = {m.measure for m in data.measurements}
    for finding in itertools.chain(data.findings, data.past):
        present.update(finding.valuesets)
    return frozenset(present)


def _may_fire(rule: Rule, present: frozenset[str]) -> bool:
    """False when no finding or result could trigger the rule: it then fires nothing, notes no
    older finding and leaves nothing undetermined, so it need not be evaluated."""
    return not present.isdisjoint(rule.valuesets) or not present.isdisjoint(rule.measures)


def evaluate(
    kb: KnowledgeBase,
    data: PatientFindings,
    today: dt.date,
    rules: tuple[Rule, ...] | None = None,
) -> Evaluation:
    """Every rule of `rules` (a service's; by default all) that fires, in card order, the older
    red flags worth a line, and the review."""
    rules = kb.rules if rules is None else rules
    req = _Requirements(data, today)
    matches: list[Match] = []
    older: list[OlderFinding] = []
    undetermined: list[tuple[Rule, Finding, tuple[Evidence, ...]]] = []
    present = _present(data)
    for rule in rules:
        if not _may_fire(rule, present):
            continue
        result = _evaluate_rule(rule, data, req, today)
        if result.match:
            matches.append(result.match)
        older.extend(OlderFinding(rule, f) for f in result.older)
        undetermined.extend((rule, f, ctx) for f, ctx in result.undetermined)
    seen = {e.reference for m in matches for e in m.evidence}
    red_flag_rules = [r for r in rules if r.older == "context"]
    review = _review_matches(kb, red_flag_rules, undetermined, data.to_review, req, seen)
    fired_themes = {m.rule.theme for m in matches} | {m.rule.theme for m in review}
    kept = [m for m in matches if not fired_themes.intersection(m.rule.unless_themes)]
    seen = {e.reference for m in kept for e in m.evidence} | {
        e.reference for m in review for e in m.evidence
    }
    unique_older = []
    for note in older:
        if note.finding.reference not in seen:
            seen.add(note.finding.reference)
            unique_older.append(note)
    return Evaluation(tuple(kept), tuple(unique_older), tuple(review))
