"""The rule-performance report: which rules help and which only add noise, from the database.

Per rule (named by its title and its card's title, grouped by the card's indicator): cards
issued, and of those the cards accepted or overridden (a card counts once, by its latest
feedback), each rate with its counts, the accepted suggestions, and the most frequent override
reasons with their comments. A rule with fewer cards than the stated minimum is marked "too few
to judge" and ranked after the rules that can be judged. Per rule and ISO week (Monday to
Sunday): the same counts, for the trend. Per service: calls, 412 answers, latency p50 and p95
(nearest rank), and calls per day. `since` and `until` (both days included, UTC) apply to when
the call was made; feedback counts for the cards issued in that period.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, Select, select

from ..core.knowledge import KnowledgeBase
from .models import Feedback, FiredRule, IssuedCard, IssuedSuggestion, ServiceCall

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
    #: suggested orders issued and accepted, per suggestion and per rule (`suggestion_acceptances`)
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


def _rate(part: int, whole: int) -> float:
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
                "acceptance_rate": _rate(len(accepted), len(issued)),
                "override_rate": _rate(len(overrides), len(issued)),
                "judged": len(issued) >= min_cards,
                "accepted_suggestions": [
                    {"id": sid, "count": n} for sid, n in _most_common(suggestions, 100)
                ],
                "override_reasons": top_reasons(overrides, displays),
            }
        )
    return sorted(rows, key=_rank)


def week_of(day: dt.date) -> dt.date:
    """The Monday of the ISO week holding `day`."""
    return day - dt.timedelta(days=day.weekday())


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
                "acceptance_rate": _rate(outcomes.count("accepted"), len(issued)),
                "override_rate": _rate(outcomes.count("overridden"), len(issued)),
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


# --------------------------------------------------------------------------------- queries


def _period(
    query: Select[Any], since: dt.datetime | None, before: dt.datetime | None
) -> Select[Any]:
    if since is not None:
        query = query.where(ServiceCall.recorded_at >= since)
    if before is not None:
        query = query.where(ServiceCall.recorded_at < before)
    return query


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


def _with_suggestion_names(connection: Any, latest: dict[str, Outcome]) -> dict[str, Outcome]:
    """Accepted suggestions named by the knowledge's suggestion id, not the uuid a card carried."""
    uuids = {s for outcome in latest.values() for s in outcome.suggestions}
    if not uuids:
        return latest
    names = dict(
        connection.execute(
            select(IssuedSuggestion.uuid, IssuedSuggestion.suggestion_id).where(
                IssuedSuggestion.uuid.in_(uuids)
            )
        ).all()
    )
    return {
        card: replace(outcome, suggestions=tuple(names.get(s, s) for s in outcome.suggestions))
        for card, outcome in latest.items()
    }


def _suggestion_ids(stored: Any) -> Iterable[str]:
    """The accepted suggestions' ids as stored (ids, or objects with an `id`)."""
    for item in stored or ():
        shown = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(shown, str):
            yield shown


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _start_of(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), dt.UTC) if day else None


def _a_service_call(call: Any, kb: KnowledgeBase | None) -> bool:
    """Not a 404 for an id that is no service (older records kept them), nor an unknown id."""
    return call.status != 404 and (kb is None or call.service_id in kb.services)


def build_report(
    engine: Engine,
    since: dt.date | None = None,
    kb: KnowledgeBase | None = None,
    *,
    until: dt.date | None = None,
    min_cards: int = MIN_CARDS_TO_JUDGE,
) -> Report:
    start = _start_of(since)
    before = _start_of(until + dt.timedelta(days=1)) if until else None
    rule_query = _period(
        select(FiredRule.rule_id, FiredRule.card_uuid, ServiceCall.recorded_at)
        .join(ServiceCall, ServiceCall.id == FiredRule.call_id)
        .where(FiredRule.card_uuid.is_not(None)),
        start,
        before,
    )
    feedback_query = _period(
        select(
            Feedback.id,
            Feedback.card_uuid,
            Feedback.outcome,
            Feedback.outcome_timestamp,
            Feedback.accepted_suggestions,
            Feedback.override_system,
            Feedback.override_code,
            Feedback.override_display,
            Feedback.user_comment,
        )
        .join(IssuedCard, IssuedCard.uuid == Feedback.card_uuid)
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id),
        start,
        before,
    )
    call_query = _period(
        select(
            ServiceCall.service_id,
            ServiceCall.status,
            ServiceCall.latency_ms,
            ServiceCall.recorded_at,
        ),
        start,
        before,
    )
    with engine.connect() as connection:
        rule_cards = [
            RuleCard(r.rule_id, r.card_uuid, _utc(r.recorded_at).date())
            for r in connection.execute(rule_query)
        ]
        latest = _with_suggestion_names(
            connection, latest_feedback(connection.execute(feedback_query))
        )
        calls = [c for c in connection.execute(call_query) if _a_service_call(c, kb)]
    per_day: Counter[tuple[dt.date, str]] = Counter(
        (_utc(c.recorded_at).date(), c.service_id) for c in calls
    )
    return Report(
        rules=rule_summaries(
            ((rc.rule_id, rc.card_uuid) for rc in rule_cards),
            latest,
            reason_displays(kb),
            kb,
            min_cards,
        ),
        services=service_summaries((c.service_id, c.status, c.latency_ms) for c in calls),
        calls_per_day=dict(per_day),
        weekly=weekly_summaries(rule_cards, latest),
        since=since,
        until=until,
        min_cards=min_cards,
        acceptances=suggestion_acceptances(engine, start, before),
    )


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


def suggestion_acceptances(
    engine: Engine, start: dt.datetime | None = None, before: dt.datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Suggested orders issued (in calls of the period) and accepted, per suggestion and rule."""
    issued_query = _period(
        select(IssuedSuggestion.uuid, IssuedSuggestion.suggestion_id, IssuedSuggestion.rules)
        .join(IssuedCard, IssuedCard.uuid == IssuedSuggestion.card_uuid)
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id),
        start,
        before,
    )
    accepted_query = select(Feedback.accepted_suggestions).where(Feedback.outcome == "accepted")
    with engine.connect() as connection:
        issued = [(r.uuid, r.suggestion_id, r.rules) for r in connection.execute(issued_query)]
        accepted = [r.accepted_suggestions for r in connection.execute(accepted_query)]
    return count_acceptances(issued, accepted)


# ------------------------------------------------------------------------------ renderings

TABLE_WIDTH = 80
TOO_FEW = "too few to judge"


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"


def _percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def counted(part: int, whole: int) -> str:
    """A rate with its counts: "3 of 40 (8%)"."""
    return f"{part} of {whole} ({_percent(_rate(part, whole))})"


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ") or [
        indent
    ]


def _rules_table(rules: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    rows = [
        [
            f"{r['title']}\n[{r['rule']}]",
            r["issued"],
            counted(r["accepted"], r["issued"]),
            counted(r["overridden"], r["issued"]),
            "" if r["judged"] else TOO_FEW,
        ]
        for r in rules
    ]
    return tabulate(
        rows,
        ["rule [id]", "cards", "accepted", "overridden", ""],
        tablefmt="simple_grid",
        maxcolwidths=[26, None, 13, 13, 8],
    )


def _rule_notes(rules: list[dict[str, Any]]) -> list[str]:
    """Override reasons and accepted suggestions of each rule, wrapped to the table's width."""
    lines: list[str] = []
    for r in rules:
        if not r["override_reasons"] and not r["accepted_suggestions"]:
            continue
        lines += _wrap(f"{r['title']}:", TABLE_WIDTH)
        for reason in r["override_reasons"]:
            lines += _wrap(f"overridden: {reason['reason']} ({reason['count']})", TABLE_WIDTH, "  ")
            for comment in reason["comments"]:
                lines += _wrap(f'"{comment}"', TABLE_WIDTH, "      ")
        for suggestion in r["accepted_suggestions"]:
            lines += _wrap(
                f"accepted suggestion {suggestion['id']} ({suggestion['count']})", TABLE_WIDTH, "  "
            )
    return lines


def render_table(report: Report) -> str:
    """The report for an 80-column terminal: long names and reasons wrap inside their column."""
    from tabulate import tabulate

    out = [
        f"Rule performance, {report.period_text()} (UTC).",
        *_wrap(
            f"A card counts once, by its latest feedback. A rule with fewer than "
            f"{report.min_cards} cards is {TOO_FEW}: its rates are shown, not ranked.",
            TABLE_WIDTH,
        ),
        "",
    ]
    if not report.rules:
        out += ["(no cards issued)", ""]
    for indicator in (*INDICATORS, ""):
        rules = [r for r in report.rules if r["indicator"] == indicator]
        if not rules:
            continue
        out += [f"{(indicator or 'other').upper()} cards", _rules_table(rules), ""]
    notes = _rule_notes(report.rules)
    if notes:
        out += ["Override reasons (comments) and accepted suggestions", *notes, ""]
    services = [
        [
            s["service"],
            s["calls"],
            s["precondition_failed"],
            s["latency_ms_p50"],
            s["latency_ms_p95"],
        ]
        for s in report.services
    ]
    out += [
        "Services",
        tabulate(
            services,
            ["service", "calls", "412", "p50 ms", "p95 ms"],
            tablefmt="simple_grid",
            maxcolwidths=[34, None, None, None, None],
        )
        if services
        else "(no calls)",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------------------- charts

INDICATOR_COLOURS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1f77b4", "": "#555"}
GREY = "#b0b0b0"
DAY_MS = 86_400_000


def _override_chart(report: Report) -> Any:
    """Override rate per rule, grouped by indicator; rules too few to judge drawn in grey."""
    import plotly.graph_objects as go

    rules = list(reversed(report.rules))  # plotly draws the first bar at the bottom
    labels = [f"{r['title']} ({(r['indicator'] or 'other')})" for r in rules]
    figure = go.Figure(
        go.Bar(
            x=[r["override_rate"] * 100 for r in rules],
            y=labels,
            orientation="h",
            marker_color=[
                INDICATOR_COLOURS.get(r["indicator"], GREY) if r["judged"] else GREY for r in rules
            ],
            text=[
                f"{r['overridden']} of {r['issued']}" + ("" if r["judged"] else f" - {TOO_FEW}")
                for r in rules
            ],
            textposition="outside",
            customdata=[[r["issued"], r["overridden"], r["accepted"], r["card"]] for r in rules],
            hovertemplate=(
                "%{y}<br>card: %{customdata[3]}<br>override rate %{x:.0f}%<br>"
                "issued %{customdata[0]}, overridden %{customdata[1]}, "
                "accepted %{customdata[2]}<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        title="Override rate per rule (overridden / issued cards; grey: " + TOO_FEW + ")",
        xaxis={
            "title": "override rate",
            "range": [0, 125],
            "tickvals": [0, 20, 40, 60, 80, 100],
            "ticktext": [f"{v}%" for v in range(0, 101, 20)],
        },
        yaxis={"automargin": True},
        height=max(300, 30 * len(rules) + 140),
        margin={"l": 20, "r": 20},
    )
    return figure


def _day_axis(days: Sequence[dt.date]) -> dict[str, Any]:
    """A date axis with whole-day ticks, sensible for one day of data as for many."""
    first, last = min(days), max(days)
    span = (last - first).days + 1
    step = 1 if span <= 16 else 7
    return {
        "type": "date",
        "range": [
            (dt.datetime.combine(first, dt.time()) - dt.timedelta(hours=12)).isoformat(),
            (dt.datetime.combine(last, dt.time()) + dt.timedelta(hours=12)).isoformat(),
        ],
        "tick0": week_of(first).isoformat() if step == 7 else first.isoformat(),
        "dtick": step * DAY_MS,
        "tickformat": "%a %d %b" if step == 1 else "%d %b",
        "title": "day (UTC)" if step == 1 else "week starting (UTC)",
    }


def _calls_chart(report: Report) -> Any:
    """Calls per day, one bar per service per day."""
    import plotly.graph_objects as go

    figure = go.Figure()
    services = sorted({service for _, service in report.calls_per_day})
    for service in services:
        days = sorted(day for day, s in report.calls_per_day if s == service)
        figure.add_trace(
            go.Bar(
                x=[d.isoformat() for d in days],
                y=[report.calls_per_day[(d, service)] for d in days],
                name=service,
                width=[0.8 * DAY_MS] * len(days),  # a day wide, even with one day of data
                hovertemplate="%{x|%a %d %b %Y}: %{y} calls<extra>" + service + "</extra>",
            )
        )
    all_days = [day for day, _ in report.calls_per_day]
    figure.update_layout(
        title="Service calls per day",
        barmode="stack",
        xaxis=_day_axis(all_days) if all_days else {"title": "day (UTC)"},
        yaxis={"title": "calls", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        colorway=["#4e79a7", "#9c9c9c", "#76b7b2", "#b07aa1"],
    )
    return figure


def _trend_chart(report: Report) -> Any:
    """Small multiples: per rule that can be judged, its weekly override and acceptance rates."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rules = [r for r in report.rules if r["judged"]]
    if not rules:
        return go.Figure().update_layout(title="No rule has enough cards for a trend", height=200)
    columns = 2
    rows = math.ceil(len(rules) / columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"{r['title']} ({r['indicator']})" for r in rules],
        shared_xaxes="all",
        vertical_spacing=min(0.12, 0.5 / rows),
        horizontal_spacing=0.08,
    )
    weeks_seen = sorted({w["week"] for w in report.weekly})
    lines = (("override_rate", "overridden", "#c62828"), ("acceptance_rate", "accepted", "#2e7d32"))
    for index, rule in enumerate(rules):
        weeks = [w for w in report.weekly if w["rule"] == rule["rule"]]
        for rate, part, colour in lines:
            figure.add_trace(
                go.Scatter(
                    x=[w["week"] for w in weeks],
                    y=[w[rate] * 100 for w in weeks],
                    mode="lines+markers",
                    name=part,
                    legendgroup=part,
                    showlegend=index == 0,
                    line={"color": colour},
                    customdata=[[w[part], w["issued"]] for w in weeks],
                    hovertemplate=(
                        f"week of %{{x|%d %b}}: {part} %{{y:.0f}}% "
                        "(%{customdata[0]} of %{customdata[1]} cards)<extra></extra>"
                    ),
                ),
                row=index // columns + 1,
                col=index % columns + 1,
            )
    figure.update_yaxes(range=[0, 105], tickvals=[0, 50, 100], ticktext=["0%", "50%", "100%"])
    figure.update_xaxes(
        type="date",
        tickvals=weeks_seen,
        ticktext=[dt.date.fromisoformat(w).strftime("%d %b") for w in weeks_seen],
        range=_padded(weeks_seen, days=3),
    )
    figure.update_annotations(font_size=12)
    figure.update_layout(
        title="Weekly override and acceptance rates (weeks start on Monday)",
        height=190 * rows + 140,
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        margin={"t": 110},
    )
    return figure


def _padded(isodays: Sequence[str], days: int) -> list[str]:
    first = dt.date.fromisoformat(isodays[0]) - dt.timedelta(days=days)
    last = dt.date.fromisoformat(isodays[-1]) + dt.timedelta(days=days)
    return [first.isoformat(), last.isoformat()]


def week_days(report: Report) -> dict[str, int]:
    """Per week (its Monday), on how many of its days the service was called: 7 is a full week."""
    days: dict[str, set[dt.date]] = defaultdict(set)
    for day, _ in report.calls_per_day:
        days[week_of(day).isoformat()].add(day)
    return {week: len(seen) for week, seen in days.items()}


def weekly_table(report: Report) -> tuple[list[str], list[dict[str, Any]]]:
    """Weeks (Mondays) and, per rule in report order, its cells: overridden and accepted."""
    weeks = sorted({w["week"] for w in report.weekly})
    by_key = {(w["rule"], w["week"]): w for w in report.weekly}
    rows = []
    for r in report.rules:
        cells = [by_key.get((r["rule"], week)) for week in weeks]
        rows.append({"rule": r, "cells": cells})
    return weeks, rows


def render_html(report: Report) -> str:
    """One self-contained page (plotly's JavaScript embedded): it needs no network."""
    import jinja2
    import plotly.io as pio
    from markupsafe import Markup

    config = {"displaylogo": False, "responsive": True}
    figures = [
        _override_chart(report),
        _trend_chart(report),
        _calls_chart(report),
    ]
    charts = [
        Markup(  # plotly's own HTML, not user text
            pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), config=config)
        )
        for i, f in enumerate(figures)
    ]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cds_service.storage", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    template = environment.get_template("report.html")
    weeks, weekly_rows = weekly_table(report)
    return template.render(
        report=report,
        charts=charts,
        percent=_percent,
        counted=counted,
        indicators=INDICATORS,
        too_few=TOO_FEW,
        weeks=weeks,
        week_days=week_days(report),
        weekly_rows=weekly_rows,
        day=lambda iso: dt.date.fromisoformat(iso).strftime("%d %b"),
    )


RENDERERS = {"json": render_json, "table": render_table, "html": render_html}
