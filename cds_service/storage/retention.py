"""Retention: remove audit records and feedback older than the operator keeps them.

`purge` works in bounded batches, each its own short transaction, so that a large purge never
holds locks for long nor needs memory in proportion to what it removes, and the service keeps
writing while it runs (on SQLite and PostgreSQL alike). A call goes with its cards, their
suggestions, fired rules and evidence references; feedback goes by when it was received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from .models import EvidenceRef, Feedback, FiredRule, IssuedCard, IssuedSuggestion, ServiceCall

BATCH_SIZE = 500


@dataclass
class Purged:
    """How many rows of each table a purge removed, in how many batches."""

    cutoff: dt.datetime
    rows: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "service_calls",
                "issued_cards",
                "issued_suggestions",
                "fired_rules",
                "evidence_refs",
                "feedback",
            ),
            0,
        )
    )
    batches: int = 0

    def lines(self) -> list[str]:
        shown = self.cutoff.isoformat(timespec="seconds")
        out = [f"removed what was recorded before {shown} ({self.batches} batches):"]
        out += [f"  {table:14} {count:>9,}" for table, count in self.rows.items()]
        return out


def cutoff_for(days: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)


def purge(
    engine: Engine,
    cutoff: dt.datetime,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[Purged], None] | None = None,
) -> Purged:
    """Remove calls recorded, and feedback received, before `cutoff`; batch by batch."""
    purged = Purged(cutoff)
    for purge_batch in (_purge_calls, _purge_feedback):
        while purge_batch(engine, cutoff, batch_size, purged):
            purged.batches += 1
            if progress:
                progress(purged)
    return purged


def _oldest(
    connection: Connection,
    id_column: Any,
    time_column: Any,
    cutoff: dt.datetime,
    limit: int,
    order_column: Any = None,
) -> list[Any]:
    """Up to `limit` ids of rows whose time is before `cutoff`, oldest first."""
    order = time_column if order_column is None else order_column
    query = select(id_column).where(time_column < cutoff).order_by(order).limit(limit)
    return list(connection.scalars(query))


def _purge_calls(engine: Engine, cutoff: dt.datetime, limit: int, purged: Purged) -> bool:
    """One batch of old calls with what hangs on them (children first); False when none is left."""
    with engine.begin() as connection:
        ids = _oldest(connection, ServiceCall.id, ServiceCall.recorded_at, cutoff, limit)
        if not ids:
            return False
        cards = select(IssuedCard.uuid).where(IssuedCard.call_id.in_(ids))
        result = connection.execute(
            delete(IssuedSuggestion).where(IssuedSuggestion.card_uuid.in_(cards))
        )
        purged.rows["issued_suggestions"] += result.rowcount
        for model, name in (
            (EvidenceRef, "evidence_refs"),
            (FiredRule, "fired_rules"),
            (IssuedCard, "issued_cards"),
            (ServiceCall, "service_calls"),
        ):
            column = ServiceCall.id if model is ServiceCall else model.call_id
            result = connection.execute(delete(model).where(column.in_(ids)))
            purged.rows[name] += result.rowcount
    return True


def _purge_feedback(engine: Engine, cutoff: dt.datetime, limit: int, purged: Purged) -> bool:
    with engine.begin() as connection:
        ids = _oldest(connection, Feedback.id, Feedback.received_at, cutoff, limit, Feedback.id)
        if not ids:
            return False
        result = connection.execute(delete(Feedback).where(Feedback.id.in_(ids)))
        purged.rows["feedback"] += result.rowcount
    return True
