"""The rule-performance report: which rules help and which only add noise, from the database.

Per rule (named by its title and its card's title, grouped by the card's indicator): cards
issued, and of those the cards accepted or overridden (a card counts once, by its latest
feedback), each rate with its counts, the accepted suggestions, and the most frequent override
reasons with their comments. A rule with fewer cards than the stated minimum is marked "too few
to judge" and ranked after the rules that can be judged. Per rule and ISO week (Monday to
Sunday): the same counts, for the trend. Per service: calls, 412 answers, latency p50 and p95
(nearest rank), and calls per day. `since` and `until` (both days included, UTC) apply to when
the call was made; feedback counts for the cards issued in that period.

`queries` reads the rows, `summaries` turns them into the report (pure), `renderers` writes it
as a table, JSON or an HTML page; `build_report` runs the first two.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from ...core.knowledge import KnowledgeBase
from . import queries
from .renderers import DAY_MS, RENDERERS, render_html
from .summaries import (
    MIN_CARDS_TO_JUDGE,
    Outcome,
    Override,
    Report,
    a_service_call,
    accepted_suggestion_uuids,
    count_acceptances,
    latest_feedback,
    percentile,
    period_bounds,
    rule_cards_of,
    rule_summaries,
    summarise,
    top_reasons,
    with_suggestion_names,
)

__all__ = [
    "DAY_MS",
    "RENDERERS",
    "Outcome",
    "Override",
    "Report",
    "build_report",
    "latest_feedback",
    "percentile",
    "render_html",
    "rule_summaries",
    "suggestion_acceptances",
    "top_reasons",
]


def build_report(
    engine: Engine,
    since: dt.date | None = None,
    kb: KnowledgeBase | None = None,
    *,
    until: dt.date | None = None,
    min_cards: int = MIN_CARDS_TO_JUDGE,
) -> Report:
    """The report of the calls made from `since` to `until` (days, UTC; None: no bound)."""
    start, before = period_bounds(since, until)
    with engine.connect() as connection:
        rule_cards = rule_cards_of(queries.fired_rule_cards(connection, start, before))
        latest = latest_feedback(queries.card_feedback(connection, start, before))
        uuids = accepted_suggestion_uuids(latest)
        if uuids:
            latest = with_suggestion_names(latest, queries.suggestion_names(connection, uuids))
        calls = queries.service_calls(connection, start, before)
    calls = [c for c in calls if a_service_call(c, kb)]
    return summarise(
        rule_cards,
        latest,
        calls,
        suggestion_acceptances(engine, start, before),
        kb,
        since=since,
        until=until,
        min_cards=min_cards,
    )


def suggestion_acceptances(
    engine: Engine, start: dt.datetime | None = None, before: dt.datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Suggested orders issued (in calls of the period) and accepted, per suggestion and rule."""
    with engine.connect() as connection:
        issued = queries.issued_suggestions(connection, start, before)
        accepted = queries.accepted_suggestions(connection)
    return count_acceptances(issued, accepted)
