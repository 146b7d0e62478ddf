"""The report's arithmetic: rows read from the database in, summary data out (no I/O, no SQL)."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...core.knowledge import KnowledgeBase

TOP_REASONS = 5
TOP_COMMENTS = 3
NO_REASON = "no reason given"
#: Fewer cards than this and a rule's rates are shown but not judged (nor ranked first).
MIN_CARDS_TO_JUDGE = 20
INDICATORS = ("critical", "warning", "info")


@dataclass(frozen=True)
class Override:
    system: str | None
    code: str | None
    display: str | None
    comment: str | None


@dataclass(frozen=True)
class Outcome:
    """A card's latest feedback: accepted or overridden, the reason, the suggestions taken."""

    outcome: str
    override: Override
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleCard:
    """A card issued for a rule, and the day of its call."""

    rule_id: str
    card_uuid: str
    day: dt.date


@dataclass
class Report:
    rules: list[dict[str, Any]]
    services: list[dict[str, Any]]
    #: (day, service id) -> calls, for the chart of calls over time
    calls_per_day: dict[tuple[dt.date, str], int] = field(default_factory=dict)
    #: per rule, per week (its Monday): issued, accepted, overridden
    weekly: list[dict[str, Any]] = field(default_factory=list)
    since: dt.date | None = None
    until: dt.date | None = None
    min_cards: int = MIN_CARDS_TO_JUDGE
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: suggested orders issued and accepted, per suggestion and per rule (`count_acceptances`)
    acceptances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "period": {
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
            },
            "min_cards_to_judge": self.min_cards,
            "rules": self.rules,
            "weekly": self.weekly,
            "services": self.services,
            "calls_per_day": [
                {"day": day.isoformat(), "service": service, "calls": count}
                for (day, service), count in sorted(self.calls_per_day.items())
            ],
        }
        if self.acceptances.get("suggestions"):  # only once suggestions were issued
            out["acceptances"] = self.acceptances
        return out

    def period_text(self) -> str:
        if self.since and self.until:
            return f"calls from {self.since.isoformat()} to {self.until.isoformat()}"
        if self.since:
            return f"calls since {self.since.isoformat()}"
        if self.until:
            return f"calls until {self.until.isoformat()}"
        return "all calls"


# ---------------------------------------------------------------------------------- periods


def _start_of(day: dt.date | None) -> dt.datetime | None:
    """Midnight UTC at the start of `day`; None for no day."""
    return dt.datetime.combine(day, dt.time(), dt.UTC) if day else None


def period_bounds(
    since: dt.date | None, until: dt.date | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The period's first instant and the instant after it (both days included, UTC)."""
    before = _start_of(until + dt.timedelta(days=1)) if until else None
    return _start_of(since), before


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def week_of(day: dt.date) -> dt.date:
    """The Monday of the ISO week holding `day`."""
    return day - dt.timedelta(days=day.weekday())


# ------------------------------------------------------------------------------ from the rows


def rule_cards_of(rows: Iterable[Any]) -> list[RuleCard]:
    """Fired-rule rows (rule id, card uuid, when the call was recorded) as rule cards."""
    return [RuleCard(r.rule_id, r.card_uuid, _utc(r.recorded_at).date()) for r in rows]


def latest_feedback(rows: Iterable[Any]) -> dict[str, Outcome]:
    """Card uuid -> its latest outcome (by outcome time, then arrival) with its details."""
    latest: dict[str, tuple[Any, Outcome]] = {}
    for row in rows:
        key = (_utc(row.outcome_timestamp), row.id)
        if row.card_uuid not in latest or key > latest[row.card_uuid][0]:
            override = Override(
                row.override_system, row.override_code, row.override_display, row.user_comment
            )
            suggestions = tuple(_suggestion_ids(row.accepted_suggestions))
            latest[row.card_uuid] = (key, Outcome(row.outcome, override, suggestions))
    return {card: value for card, (_, value) in latest.items()}


def _suggestion_ids(stored: Any) -> Iterable[str]:
    """The accepted suggestions' ids as stored (ids, or objects with an `id`)."""
    for item in stored or ():
        shown = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(shown, str):
            yield shown


def accepted_suggestion_uuids(latest: Mapping[str, Outcome]) -> set[str]:
    """The uuids of every suggestion accepted in the cards' latest feedback."""
    return {s for outcome in latest.values() for s in outcome.suggestions}


def with_suggestion_names(
    latest: Mapping[str, Outcome], names: Mapping[str, str]
) -> dict[str, Outcome]:
    """Accepted suggestions named by the knowledge's suggestion id, not the uuid a card carried."""
    return {
        card: replace(outcome, suggestions=tuple(names.get(s, s) for s in outcome.suggestions))
        for card, outcome in latest.items()
    }


def a_service_call(call: Any, kb: KnowledgeBase | None) -> bool:
    """Not a 404 for an id that is no service (older records kept them), nor an unknown id."""
    return call.status != 404 and (kb is None or call.service_id in kb.services)


# ---------------------------------------------------------------------------- aggregation


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted values; None for no values."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


def reason_displays(kb: KnowledgeBase | None) -> dict[tuple[str, str], str]:
    """(system, code) -> display of the override reasons the knowledge offers on its cards."""
    if kb is None:
        return {}
    codings = (c for theme in kb.themes.values() for c in theme.override_reasons)
    return {(c.system, c.code): c.display for c in codings}


def _most_common(counts: Counter[Any], limit: int) -> list[tuple[Any, int]]:
    """The most frequent first; ties in a stable order (not the order rows came in)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[:limit]


def top_reasons(
    overrides: Iterable[Override], displays: Mapping[tuple[str, str], str]
) -> list[dict[str, Any]]:
    """The most frequent override reasons, each with its most frequent comments."""
    counts: Counter[tuple[str | None, str | None]] = Counter()
    comments: dict[tuple[str | None, str | None], Counter[str]] = defaultdict(Counter)
    shown: dict[tuple[str | None, str | None], str | None] = {}
    for o in overrides:
        key = (o.system, o.code)
        counts[key] += 1
        shown.setdefault(key, o.display)
        if o.comment:
            comments[key][o.comment] += 1
    out = []
    for (system, code), count in _most_common(counts, TOP_REASONS):
        display = shown[(system, code)] or displays.get((system or "", code or ""))
        out.append(
            {
                "reason": display or code or NO_REASON,
                "system": system,
                "code": code,
                "count": count,
                "comments": [c for c, _ in _most_common(comments[(system, code)], TOP_COMMENTS)],
            }
        )
    return out


def rate_of(part: int, whole: int) -> float:
    """`part` of `whole`, rounded to four places; 0 of nothing is 0."""
    return round(part / whole, 4) if whole else 0.0


def rule_names(kb: KnowledgeBase | None, rule_id: str) -> dict[str, str]:
    """How a committee knows a rule: its title, its card's title and indicator."""
    rule = next((r for r in kb.rules if r.id == rule_id), None) if kb else None
    theme = kb.themes.get(rule.theme) if kb and rule else None
    return {
        "title": rule.title if rule else rule_id,
        "card": theme.title if theme else "",
        "indicator": theme.indicator if theme else "",
    }


def _rank(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Indicator order; judged rules first, noisiest first; then the rules too few to judge."""
    indicator = row["indicator"]
    order = INDICATORS.index(indicator) if indicator in INDICATORS else len(INDICATORS)
    return (order, not row["judged"], -row["override_rate"], -row["issued"], row["title"])


def rule_summaries(
    rule_cards: Iterable[tuple[str, str]],
    latest: Mapping[str, Outcome],
    displays: Mapping[tuple[str, str], str],
    kb: KnowledgeBase | None = None,
    min_cards: int = MIN_CARDS_TO_JUDGE,
) -> list[dict[str, Any]]:
    """Per rule: issued, accepted, overridden, their rates, suggestions, top override reasons."""
    cards: dict[str, set[str]] = defaultdict(set)
    for rule_id, card in rule_cards:
        cards[rule_id].add(card)
    rows = []
    for rule_id, issued in cards.items():
        outcomes = [latest[c] for c in issued if c in latest]
        overrides = [o.override for o in outcomes if o.outcome == "overridden"]
        accepted = [o for o in outcomes if o.outcome == "accepted"]
        suggestions = Counter(s for o in accepted for s in o.suggestions)
        rows.append(
            {
                "rule": rule_id,
                **rule_names(kb, rule_id),
                "issued": len(issued),
                "accepted": len(accepted),
                "overridden": len(overrides),
                "no_feedback": len(issued) - len(outcomes),
                "acceptance_rate": rate_of(len(accepted), len(issued)),
                "override_rate": rate_of(len(overrides), len(issued)),
                "judged": len(issued) >= min_cards,
                "accepted_suggestions": [
                    {"id": sid, "count": n} for sid, n in _most_common(suggestions, 100)
                ],
                "override_reasons": top_reasons(overrides, displays),
            }
        )
    return sorted(rows, key=_rank)


def weekly_summaries(
    rule_cards: Iterable[RuleCard], latest: Mapping[str, Outcome]
) -> list[dict[str, Any]]:
    """Per rule and week: cards issued, accepted, overridden (by the card's latest feedback)."""
    cards: dict[tuple[str, dt.date], set[str]] = defaultdict(set)
    for rc in rule_cards:
        cards[(rc.rule_id, week_of(rc.day))].add(rc.card_uuid)
    rows = []
    for (rule_id, week), issued in sorted(cards.items()):
        outcomes = [latest[c].outcome for c in issued if c in latest]
        rows.append(
            {
                "rule": rule_id,
                "week": week.isoformat(),
                "issued": len(issued),
                "accepted": outcomes.count("accepted"),
                "overridden": outcomes.count("overridden"),
                "acceptance_rate": rate_of(outcomes.count("accepted"), len(issued)),
                "override_rate": rate_of(outcomes.count("overridden"), len(issued)),
            }
        )
    return rows


def service_summaries(calls: Iterable[tuple[str, int, float]]) -> list[dict[str, Any]]:
    """Per service: calls, 412 answers, latency p50 and p95 in milliseconds."""
    latencies: dict[str, list[float]] = defaultdict(list)
    failed: Counter[str] = Counter()
    for service, status, latency in calls:
        latencies[service].append(latency)
        failed[service] += status == 412
    rows = []
    for service in sorted(latencies):
        values = sorted(latencies[service])
        rows.append(
            {
                "service": service,
                "calls": len(values),
                "precondition_failed": failed[service],
                "latency_ms_p50": _ms(percentile(values, 50)),
                "latency_ms_p95": _ms(percentile(values, 95)),
            }
        )
    return rows


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def calls_per_day(calls: Iterable[Any]) -> dict[tuple[dt.date, str], int]:
    """(day of the call, service id) -> calls."""
    return dict(Counter((_utc(c.recorded_at).date(), c.service_id) for c in calls))


def count_acceptances(
    issued: Iterable[tuple[str, str, list[str]]], accepted: Iterable[list[str] | None]
) -> dict[str, list[dict[str, Any]]]:
    """Per suggestion: issued and accepted; per rule: suggestions accepted. `issued` holds
    (suggestion uuid, suggestion id, rules); `accepted`, each accepted feedback's uuids. A
    suggestion accepted twice (sent again) counts once."""
    taken = {uuid for uuids in accepted for uuid in (uuids or ())}
    per_suggestion: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_rule: Counter[str] = Counter()
    for uuid, suggestion_id, rules in issued:
        per_suggestion[suggestion_id][0] += 1
        if uuid in taken:
            per_suggestion[suggestion_id][1] += 1
            per_rule.update(dict.fromkeys(rules or (), 1))
    return {
        "suggestions": [
            {"suggestion": sid, "issued": n, "accepted": a}
            for sid, (n, a) in sorted(per_suggestion.items(), key=lambda kv: (-kv[1][1], kv[0]))
        ],
        "rules": [{"rule": r, "accepted": n} for r, n in _most_common(per_rule, len(per_rule))],
    }


def summarise(
    rule_cards: Sequence[RuleCard],
    latest: Mapping[str, Outcome],
    calls: Sequence[Any],
    acceptances: dict[str, list[dict[str, Any]]],
    kb: KnowledgeBase | None,
    *,
    since: dt.date | None,
    until: dt.date | None,
    min_cards: int,
) -> Report:
    """The report from what was read: rule cards, latest feedback, service calls, acceptances."""
    return Report(
        rules=rule_summaries(
            ((rc.rule_id, rc.card_uuid) for rc in rule_cards),
            latest,
            reason_displays(kb),
            kb,
            min_cards,
        ),
        services=service_summaries((c.service_id, c.status, c.latency_ms) for c in calls),
        calls_per_day=calls_per_day(calls),
        weekly=weekly_summaries(rule_cards, latest),
        since=since,
        until=until,
        min_cards=min_cards,
        acceptances=acceptances,
    )
