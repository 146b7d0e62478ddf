"""The report's renderings: text for an 80-column terminal, JSON, and one self-contained HTML page
(plotly charts, from the `templates` folder beside this module). `RENDERERS` names them by the
`--format` of `cds-service report`."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .summaries import INDICATORS, Report, rate_of, week_of

TABLE_WIDTH = 80
TOO_FEW = "too few to judge"


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"


def _percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def counted(part: int, whole: int) -> str:
    """A rate with its counts: "3 of 40 (8%)"."""
    return f"{part} of {whole} ({_percent(rate_of(part, whole))})"


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
        loader=jinja2.PackageLoader("cds_service.storage.report", "templates"),
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
