"""The service's database: engine, tables (SQLAlchemy 2 models) and schema revision checks.

SQLite is the default (a file in the instance folder, WAL mode); PostgreSQL is the production
database (`postgresql+psycopg://…`). Several workers and instances share one database: nothing
that must be shared lives in process memory. The schema is managed by Alembic (`migrations/`);
`cds-service db upgrade` brings a database to the current revision.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, QueuePool

from ..deadlines import DEADLINES
from ..settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


class DatabaseUnavailable(Exception):
    """The database could not be reached or written within its bound."""


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def _still_the_same_file(path: Path) -> Callable[[Any, Any, Any], None]:
    """A pooled connection is used only while its path still names the file it opened.

    An open SQLite connection to a file that was moved or deleted would go on writing to the
    old file, and what it commits would be lost; such a connection is discarded instead, and
    the fresh one fails (or finds an empty database) where the file is gone.
    """

    def on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        current = _file_identity(path)
        opened = record.info.setdefault("file_identity", current)
        if current is None or current != opened:
            raise DisconnectionError(f"the database file {path} was moved or removed")

    return on_checkout


def _sqlite_file_url(path: str, *, create: bool) -> str:
    """The URL of a SQLite file opened read-write; created only when `create` is set.

    A running service never creates its database: a worker starting while the database's disk
    is away must fail (and answer 503), not start a new, empty database beside the real one.
    """
    mode = "rwc" if create else "rw"
    return f"sqlite:///file:{quote(path)}?mode={mode}&uri=true"


def make_engine(url: str, *, connect_timeout_s: float = 2.0, create: bool = False) -> Engine:
    """An engine for the service: SQLite in WAL mode, or PostgreSQL with bounded waits.

    `create` (migrations only) makes a missing SQLite file and its folder.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        on_file = bool(path) and path != ":memory:" and "?" not in path
        if on_file:
            if create:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            url = _sqlite_file_url(path, create=create)
        # Pooled connections on a file: closing the last connection of a WAL database makes
        # SQLite checkpoint and delete the WAL, about 10 ms, on every transaction otherwise.
        engine = create_engine(
            url,
            connect_args={"timeout": connect_timeout_s, "check_same_thread": False},
            poolclass=QueuePool if on_file else NullPool,
            pool_timeout=connect_timeout_s,
        )
        sa_event.listen(engine, "connect", _sqlite_pragmas(int(connect_timeout_s * 1000)))
        if on_file:
            sa_event.listen(engine, "checkout", _still_the_same_file(Path(path)))
        return engine
    connect_args: dict[str, Any] = {}
    postgresql = url.startswith("postgresql")
    if postgresql:
        timeout_ms = int(connect_timeout_s * 1000)
        connect_args = {
            "connect_timeout": max(1, int(connect_timeout_s)),
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            # a peer that vanished (no reset): sent data unacknowledged for this long fails
            "tcp_user_timeout": timeout_ms,
        }
    engine = create_engine(
        url,
        connect_args=connect_args,
        # PostgreSQL: the ping is done at checkout under the wait bound (`bound_every_wait`)
        pool_pre_ping=not postgresql,
        pool_size=5,
        max_overflow=5,
        pool_timeout=connect_timeout_s,
    )
    if postgresql:
        bound_every_wait(engine, connect_timeout_s)
    return engine


# --- a bound on every wait for PostgreSQL ----------------------------------------------------

_DEADLINE_SOCKET = "cds_deadline_socket"


def bound_every_wait(engine: Engine, wait_s: float) -> None:
    """Each wait on a PostgreSQL connection (ping, statement, commit) ends within `wait_s`.

    `statement_timeout` bounds what the server does, but not a server (or network) that stops
    answering while the kernel still acknowledges packets: then the connection's socket is
    shut down at the deadline (`DEADLINES`), the driver fails at once, the pool drops the
    connection, and the caller gets `DatabaseUnavailable`.
    """

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        sock = socket.socket(fileno=os.dup(dbapi_connection.fileno()))
        record.info[_DEADLINE_SOCKET] = sock
        weakref.finalize(dbapi_connection, sock.close)

    def arm(info: dict[str, Any]) -> None:
        sock = info.get(_DEADLINE_SOCKET)
        if sock is not None:
            DEADLINES.arm(sock, sock, time.monotonic() + wait_s)

    def disarm(info: dict[str, Any]) -> None:
        sock = info.get(_DEADLINE_SOCKET)
        if sock is not None:
            DEADLINES.disarm(sock)

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        arm(record.info)
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any driver error: this connection is gone, try another
            raise DisconnectionError(f"ping failed: {type(exc).__name__}") from exc
        if not alive:
            raise DisconnectionError("ping failed")

    def on_statement(connection: Any, *_args: Any) -> None:
        arm(connection.info)

    def on_gone(_dbapi_connection: Any, record: Any, *_args: Any) -> None:
        if record is not None:
            disarm(record.info)
            sock = record.info.pop(_DEADLINE_SOCKET, None)
            if sock is not None:
                sock.close()

    sa_event.listen(engine.pool, "connect", on_connect)
    sa_event.listen(engine.pool, "checkout", on_checkout)
    sa_event.listen(engine.pool, "checkin", lambda _c, record: disarm(record.info))
    sa_event.listen(engine.pool, "invalidate", on_gone)
    sa_event.listen(engine.pool, "close", on_gone)
    sa_event.listen(engine, "before_cursor_execute", on_statement)
    sa_event.listen(engine, "commit", on_statement)
    sa_event.listen(engine, "rollback", on_statement)


# --- schema revisions (Alembic) --------------------------------------------------------------


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the current schema)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def schema_problem(engine: Engine, url: str) -> str | None:
    """Why the database cannot be used as it is, in one line; None when it is current."""
    if url.startswith("sqlite:///") and not Path(url.split("///", 1)[-1]).exists():
        return "database file not found: run `cds-service db upgrade`"
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error: the reason is what matters here
        return f"database unreachable ({type(exc).__name__}): check CDS_DATABASE_URL"
    head = head_revision(url)
    if current != head:
        shown = current or "empty"
        return f"database schema is at {shown}, not {head}: run `cds-service db upgrade`"
    return None
