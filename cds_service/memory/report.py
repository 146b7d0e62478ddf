"""The rule-performance report: which rules help and which only add noise, from the database.

Per rule: cards issued, and of those the cards accepted or overridden (a card counts once, by its
latest feedback), the override rate (overridden / issued) and the most frequent override reasons
with their comments. Per service: calls, 412 answers, latency p50 and p95 (nearest rank). `since`
applies to when the call was made (feedback counts for the cards issued since then).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Select, select

from ..core.knowledge import KnowledgeBase
from .models import Feedback, FiredRule, IssuedCard, IssuedSuggestion, ServiceCall

TOP_REASONS = 5
TOP_COMMENTS = 3
NO_REASON = "no reason given"


@dataclass(frozen=True)
class Override:
    system: str | None
    code: str | None
    display: str | None
    comment: str | None


@dataclass
class Report:
    rules: list[dict[str, Any]]
    services: list[dict[str, Any]]
    #: (day, service id) -> calls, for the chart of calls over time
    calls_per_day: dict[tuple[dt.date, str], int] = field(default_factory=dict)
    since: dt.date | None = None
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: suggested orders issued and accepted, per suggestion and per rule (`suggestion_acceptances`)
    acceptances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": self.rules, "services": self.services}
        if self.acceptances.get("suggestions"):  # only once suggestions were issued
            out["acceptances"] = self.acceptances
        return out


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


def rule_summaries(
    rule_cards: Iterable[tuple[str, str]],
    latest: Mapping[str, tuple[str, Override]],
    displays: Mapping[tuple[str, str], str],
) -> list[dict[str, Any]]:
    """Per rule: issued, accepted, overridden, override rate, top reasons; noisiest first."""
    cards: dict[str, set[str]] = defaultdict(set)
    for rule_id, card in rule_cards:
        cards[rule_id].add(card)
    rows = []
    for rule_id, issued in cards.items():
        outcomes = [latest[c] for c in issued if c in latest]
        overrides = [o for outcome, o in outcomes if outcome == "overridden"]
        rows.append(
            {
                "rule": rule_id,
                "issued": len(issued),
                "accepted": sum(1 for outcome, _ in outcomes if outcome == "accepted"),
                "overridden": len(overrides),
                "override_rate": round(len(overrides) / len(issued), 4),
                "override_reasons": top_reasons(overrides, displays),
            }
        )
    return sorted(rows, key=lambda r: (-r["override_rate"], -r["issued"], r["rule"]))


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


def _since(query: Select[Any], since: dt.datetime | None) -> Select[Any]:
    return query if since is None else query.where(ServiceCall.recorded_at >= since)


def latest_feedback(rows: Iterable[Any]) -> dict[str, tuple[str, Override]]:
    """Card uuid -> its latest outcome (by outcome time, then arrival) and override details."""
    latest: dict[str, tuple[Any, tuple[str, Override]]] = {}
    for row in rows:
        key = (_utc(row.outcome_timestamp), row.id)
        if row.card_uuid not in latest or key > latest[row.card_uuid][0]:
            override = Override(
                row.override_system, row.override_code, row.override_display, row.user_comment
            )
            latest[row.card_uuid] = (key, (row.outcome, override))
    return {card: value for card, (_, value) in latest.items()}


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def build_report(
    engine: Engine, since: dt.date | None = None, kb: KnowledgeBase | None = None
) -> Report:
    start = dt.datetime.combine(since, dt.time(), dt.UTC) if since else None
    rule_query = _since(
        select(FiredRule.rule_id, FiredRule.card_uuid)
        .join(ServiceCall, ServiceCall.id == FiredRule.call_id)
        .where(FiredRule.card_uuid.is_not(None)),
        start,
    )
    feedback_query = _since(
        select(
            Feedback.id,
            Feedback.card_uuid,
            Feedback.outcome,
            Feedback.outcome_timestamp,
            Feedback.override_system,
            Feedback.override_code,
            Feedback.override_display,
            Feedback.user_comment,
        )
        .join(IssuedCard, IssuedCard.uuid == Feedback.card_uuid)
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id),
        start,
    )
    call_query = _since(
        select(
            ServiceCall.service_id,
            ServiceCall.status,
            ServiceCall.latency_ms,
            ServiceCall.recorded_at,
        ),
        start,
    )
    with engine.connect() as connection:
        rule_cards = [(r.rule_id, r.card_uuid) for r in connection.execute(rule_query)]
        latest = latest_feedback(connection.execute(feedback_query))
        calls = list(connection.execute(call_query))
    per_day: Counter[tuple[dt.date, str]] = Counter(
        (_utc(c.recorded_at).date(), c.service_id) for c in calls
    )
    return Report(
        rules=rule_summaries(rule_cards, latest, reason_displays(kb)),
        services=service_summaries((c.service_id, c.status, c.latency_ms) for c in calls),
        calls_per_day=dict(per_day),
        since=since,
        acceptances=suggestion_acceptances(engine, start),
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
    engine: Engine, start: dt.datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Suggested orders issued (in calls since `start`) and accepted, per suggestion and rule."""
    issued_query = _since(
        select(IssuedSuggestion.uuid, IssuedSuggestion.suggestion_id, IssuedSuggestion.rules)
        .join(IssuedCard, IssuedCard.uuid == IssuedSuggestion.card_uuid)
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id),
        start,
    )
    accepted_query = select(Feedback.accepted_suggestions).where(Feedback.outcome == "accepted")
    with engine.connect() as connection:
        issued = [(r.uuid, r.suggestion_id, r.rules) for r in connection.execute(issued_query)]
        accepted = [r.accepted_suggestions for r in connection.execute(accepted_query)]
    return count_acceptances(issued, accepted)


# ------------------------------------------------------------------------------ renderings


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"


def _percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def _reasons_text(reasons: list[dict[str, Any]]) -> str:
    parts = []
    for r in reasons:
        comments = "; ".join(f'"{c}"' for c in r["comments"])
        parts.append(f"{r['reason']} ({r['count']})" + (f": {comments}" if comments else ""))
    return "\n".join(parts)


def render_table(report: Report) -> str:
    from tabulate import tabulate

    rules = [
        [
            r["rule"],
            r["issued"],
            r["accepted"],
            r["overridden"],
            _percent(r["override_rate"]),
            _reasons_text(r["override_reasons"]),
        ]
        for r in report.rules
    ]
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
    since = f" since {report.since.isoformat()}" if report.since else ""
    return "\n".join(
        [
            f"Rules{since}",
            tabulate(
                rules,
                ["rule", "issued", "accepted", "overridden", "override rate", "top reasons"],
                tablefmt="simple_grid",
            )
            if rules
            else "(no cards issued)",
            "",
            f"Services{since}",
            tabulate(
                services,
                ["service", "calls", "412", "p50 ms", "p95 ms"],
                tablefmt="simple_grid",
            )
            if services
            else "(no calls)",
            "",
        ]
    )


def _override_chart(report: Report) -> Any:
    import plotly.graph_objects as go

    rules = list(reversed(report.rules))  # plotly draws the first bar at the bottom
    figure = go.Figure(
        go.Bar(
            x=[r["override_rate"] * 100 for r in rules],
            y=[r["rule"] for r in rules],
            orientation="h",
            text=[f"{r['overridden']} of {r['issued']}" for r in rules],  # the sample size
            textposition="outside",
            customdata=[[r["issued"], r["overridden"], r["accepted"]] for r in rules],
            hovertemplate=(
                "%{y}<br>override rate %{x:.0f}%<br>issued %{customdata[0]}, "
                "overridden %{customdata[1]}, accepted %{customdata[2]}<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        title="Override rate per rule (overridden / issued cards)",
        xaxis={"title": "override rate (%)", "range": [0, 115]},
        height=max(300, 28 * len(rules) + 120),
        margin={"l": 260},
    )
    return figure


def _calls_chart(report: Report) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    services = sorted({service for _, service in report.calls_per_day})
    for service in services:
        days = sorted(day for day, s in report.calls_per_day if s == service)
        figure.add_trace(
            go.Scatter(
                x=[d.isoformat() for d in days],
                y=[report.calls_per_day[(d, service)] for d in days],
                mode="lines+markers",
                name=service,
            )
        )
    figure.update_layout(
        title="Service calls per day",
        xaxis={"title": "day (UTC)"},
        yaxis={"title": "calls", "rangemode": "tozero"},
    )
    return figure


def render_html(report: Report) -> str:
    """One self-contained page (plotly's JavaScript embedded): it needs no network."""
    import jinja2
    import plotly.io as pio
    from markupsafe import Markup

    charts = [
        pio.to_html(_override_chart(report), full_html=False, include_plotlyjs=True),
        pio.to_html(_calls_chart(report), full_html=False, include_plotlyjs=False),
    ]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cds_service.memory", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    template = environment.get_template("report.html")
    return template.render(
        report=report,
        charts=[Markup(chart) for chart in charts],  # plotly's own HTML, not user text
        percent=_percent,
    )


RENDERERS = {"json": render_json, "table": render_table, "html": render_html}
