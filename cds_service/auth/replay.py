"""JWT replay protection: a `jti` is accepted once per issuer within the token's lifetime.

The `seen_tokens` table (`cds_service.storage.models.SeenToken`) is shared by every worker and
instance on the same database. A token is claimed with one atomic statement, an upsert on the
primary key (issuer, jti): a new pair is inserted; an existing pair is taken over only when its
row has expired; otherwise nothing changes and the token is a replay. Two concurrent claims of
one `jti` cannot both succeed, in one process or across many.

When the database cannot be reached the guard raises `DatabaseUnavailable`: the caller must
refuse the request (the web layer answers 503), never accept it unchecked.

Expired rows are purged by whichever worker claims a token after `purge_interval_s`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..storage.database import DatabaseUnavailable
from ..storage.models import SeenToken

log = logging.getLogger(__name__)
_INSERTS: dict[str, Callable[..., Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def _utc(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC)


class ReplayGuard:
    """Claims (issuer, jti) pairs in the service's database."""

    def __init__(
        self,
        engine: Engine,
        *,
        purge_interval_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ):
        if engine.dialect.name not in _INSERTS:
            raise ValueError(f"replay store: unsupported database {engine.dialect.name}")
        self._engine = engine
        self._insert = _INSERTS[engine.dialect.name]
        self._purge_interval_s = purge_interval_s
        self._clock = clock
        self._next_purge = clock() + purge_interval_s
        self._purge_lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Claim the pair until `expires_at` (epoch seconds); False when already claimed."""
        now = self._clock()
        statement = self._claim(issuer, jti, _utc(expires_at), _utc(now))
        try:
            with self._engine.begin() as connection:
                claimed = connection.execute(statement).first() is not None
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"replay store: {type(exc).__name__}") from exc
        if claimed:
            self._purge_if_due(now)
        return claimed

    def _claim(self, issuer: str, jti: str, expires_at: dt.datetime, now: dt.datetime) -> Any:
        insert = self._insert(SeenToken).values(issuer=issuer, jti=jti, expires_at=expires_at)
        return insert.on_conflict_do_update(
            index_elements=[SeenToken.issuer, SeenToken.jti],
            set_={"expires_at": insert.excluded.expires_at},
            where=SeenToken.expires_at <= now,
        ).returning(SeenToken.jti)

    def purge_expired(self) -> int:
        """Delete the rows whose token has expired; the number deleted."""
        statement = delete(SeenToken).where(SeenToken.expires_at <= _utc(self._clock()))
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount

    def _purge_if_due(self, now: float) -> None:
        if now < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = now + self._purge_interval_s
            deleted = self.purge_expired()
            log.debug("purged %d expired token ids", deleted)
        except SQLAlchemyError as exc:  # the claim succeeded; a purge can wait for next time
            log.warning("could not purge expired token ids: %s", type(exc).__name__)
        finally:
            self._purge_lock.release()
