"""Store feedback synchronously: the client hears 200 only once the items are committed.

Each item is inserted with `ON CONFLICT DO NOTHING` on its fingerprint, so a repeat (in one
batch, in a later call, or racing in from another worker) is stored once and never fails. An item
whose card we never issued is stored with `card_matched` false; the audit writer sets it when the
card's record arrives later.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, bindparam, exists, select
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


def store_feedback(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Commit the rows (repeats ignored); `DatabaseUnavailable` if they could not be committed."""
    parameters = [{**row, _MATCH: row["card_uuid"]} for row in rows]
    try:
        with engine.begin() as connection:
            connection.execute(_insert_statement(connection.dialect.name), parameters)
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
