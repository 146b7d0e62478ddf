"""Store feedback synchronously: the client hears 200 only once the items are committed.

Each item is inserted with `ON CONFLICT DO NOTHING` on its fingerprint, so a repeat (in one
batch, in a later call, or racing in from another worker) is stored once and never fails. An item
whose card we never issued is stored with `card_matched` false; the audit writer sets it when the
card's record arrives later. Feedback and its card's record can be written at the same moment, by
two workers whose transactions cannot see each other's rows; so each side matches again once its
own rows are committed, and whichever commits last sees the other's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from .database import DatabaseUnavailable
from .models import Feedback, IssuedCard, IssuedSuggestion

_MATCH = "match_card"


def _insert_statement(dialect: str) -> Any:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    issued = exists().where(IssuedCard.uuid == bindparam(_MATCH))
    return insert(Feedback).values(card_matched=issued).on_conflict_do_nothing()


#: Feedback on these cards, not yet matched, whose card's record is stored.
_MATCH_ISSUED = (
    update(Feedback)
    .where(
        Feedback.card_uuid.in_(bindparam("uuids", expanding=True)),
        Feedback.card_matched.is_(False),
        exists().where(IssuedCard.uuid == Feedback.card_uuid),
    )
    .values(card_matched=True)
)


def match_feedback(connection: Connection, card_uuids: Iterable[str]) -> None:
    """Mark feedback on these cards matched where the card's record is stored, in a transaction
    of its own: run once the caller's own rows (feedback, or cards) are committed."""
    with connection.begin():
        connection.execute(_MATCH_ISSUED, {"uuids": list(dict.fromkeys(card_uuids))})


def store_feedback(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Commit the rows (repeats ignored), then match them to cards whose records were committed
    meanwhile; `DatabaseUnavailable` if either failed (a repeat of the call is harmless)."""
    parameters = [{**row, _MATCH: row["card_uuid"]} for row in rows]
    try:
        with engine.connect() as connection:
            with connection.begin():
                connection.execute(_insert_statement(connection.dialect.name), parameters)
            match_feedback(connection, (row["card_uuid"] for row in rows))
    except (SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise DatabaseUnavailable(f"{type(exc).__name__}: {reason}") from exc


def issued_suggestions(engine: Engine, card_uuids: list[str]) -> dict[str, frozenset[str]]:
    """For each of these cards that we issued, the uuids of the suggestions it carried."""
    if not card_uuids:
        return {}
    try:
        with engine.connect() as connection:
            cards = connection.execute(
                select(IssuedCard.uuid).where(IssuedCard.uuid.in_(card_uuids))
            ).scalars()
            found: dict[str, set[str]] = {card: set() for card in cards}
            rows = connection.execute(
                select(IssuedSuggestion.card_uuid, IssuedSuggestion.uuid).where(
                    IssuedSuggestion.card_uuid.in_(list(found))
                )
            )
            for card, suggestion in rows:
                found[card].add(suggestion)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise DatabaseUnavailable(f"{type(exc).__name__}: {reason}") from exc
    return {card: frozenset(ids) for card, ids in found.items()}
