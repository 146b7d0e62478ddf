"""The report's reads: SQLAlchemy selects over the audit trail and feedback, nothing computed.

Each read takes an open connection and the period (`start` included, `before` excluded, on when
the call was recorded; None for no bound) and returns the rows as they come.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Row, Select, select

from ..models import Feedback, FiredRule, IssuedCard, IssuedSuggestion, ServiceCall


def in_period(
    query: Select[Any], start: dt.datetime | None, before: dt.datetime | None
) -> Select[Any]:
    """`query` limited to the calls recorded in the period."""
    if start is not None:
        query = query.where(ServiceCall.recorded_at >= start)
    if before is not None:
        query = query.where(ServiceCall.recorded_at < before)
    return query


def fired_rule_cards(
    connection: Connection, start: dt.datetime | None, before: dt.datetime | None
) -> list[Row[Any]]:
    """Per rule fired with a card: rule_id, card_uuid, and recorded_at of its call."""
    query = (
        select(FiredRule.rule_id, FiredRule.card_uuid, ServiceCall.recorded_at)
        .join(ServiceCall, ServiceCall.id == FiredRule.call_id)
        .where(FiredRule.card_uuid.is_not(None))
    )
    return list(connection.execute(in_period(query, start, before)))


def card_feedback(
    connection: Connection, start: dt.datetime | None, before: dt.datetime | None
) -> list[Row[Any]]:
    """Every feedback item on a card issued in the period, with its outcome and details."""
    query = (
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
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id)
    )
    return list(connection.execute(in_period(query, start, before)))


def suggestion_names(connection: Connection, uuids: Collection[str]) -> dict[str, str]:
    """Issued suggestion uuid -> the knowledge's suggestion id, for these uuids."""
    query = select(IssuedSuggestion.uuid, IssuedSuggestion.suggestion_id).where(
        IssuedSuggestion.uuid.in_(uuids)
    )
    return dict(connection.execute(query).all())


def service_calls(
    connection: Connection, start: dt.datetime | None, before: dt.datetime | None
) -> list[Row[Any]]:
    """Every call of the period: service_id, status, latency_ms, recorded_at."""
    query = select(
        ServiceCall.service_id,
        ServiceCall.status,
        ServiceCall.latency_ms,
        ServiceCall.recorded_at,
    )
    return list(connection.execute(in_period(query, start, before)))


def issued_suggestions(
    connection: Connection, start: dt.datetime | None, before: dt.datetime | None
) -> list[tuple[str, str, list[str]]]:
    """Per suggestion issued on a card of the period: its uuid, its id, the rules behind it."""
    query = (
        select(IssuedSuggestion.uuid, IssuedSuggestion.suggestion_id, IssuedSuggestion.rules)
        .join(IssuedCard, IssuedCard.uuid == IssuedSuggestion.card_uuid)
        .join(ServiceCall, ServiceCall.id == IssuedCard.call_id)
    )
    rows = connection.execute(in_period(query, start, before))
    return [(r.uuid, r.suggestion_id, r.rules) for r in rows]


def accepted_suggestions(connection: Connection) -> list[list[str] | None]:
    """Each accepted feedback item's accepted suggestions, as stored (any period)."""
    query = select(Feedback.accepted_suggestions).where(Feedback.outcome == "accepted")
    return [r.accepted_suggestions for r in connection.execute(query)]
