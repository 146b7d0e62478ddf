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

from sqlalchemy import Engine, delete, select

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
    while _purge_calls(engine, cutoff, batch_size, purged):
        purged.batches += 1
        if progress:
            progress(purged)
    while _purge_feedback(engine, cutoff, batch_size, purged):
        purged.batches += 1
        if progress:
            progress(purged)
    return purged


def _purge_calls(engine: Engine, cutoff: dt.datetime, limit: int, purged: Purged) -> bool:
    """One batch of old calls with what hangs on them (children first); False when none is left."""
    with engine.begin() as connection:
        ids = list(
            connection.scalars(
                select(ServiceCall.id)
                .where(ServiceCall.recorded_at < cutoff)
                .order_by(ServiceCall.recorded_at)
                .limit(limit)
            )
        )
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
        ids = list(
            connection.scalars(
                select(Feedback.id)
                .where(Feedback.received_at < cutoff)
                .order_by(Feedback.id)
                .limit(limit)
            )
        )
        if not ids:
            return False
        result = connection.execute(delete(Feedback).where(Feedback.id.in_(ids)))
        purged.rows["feedback"] += result.rowcount
    return True
