"""Write audit records without ever slowing or failing the clinician's call.

Each worker process has one `AuditWriter`: the request thread hands a record to a bounded queue
(`put_nowait`, a few microseconds, never blocks) and a background thread writes batches to the
database. When the database is slow or down, the thread retries the batch with a growing pause
(0.2 s doubling to 5 s), while new records wait in the queue; once the queue is full, new records
are dropped. Failed attempts and dropped records are counted (`/readyz`) and logged. At process
exit the writer gets a bounded time to write what is waiting. Writes are idempotent (`INSERT … ON
CONFLICT DO NOTHING`), so a batch retried after an uncertain commit is stored once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Insert, Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import metrics
from ..core.audit import AuditRecord, patient_key
from ..settings import Settings
from .feedback_store import match_feedback
from .models import EvidenceRef, FiredRule, IssuedCard, IssuedSuggestion, ServiceCall

log = logging.getLogger("cds_service.audit")

BATCH_SIZE = 100
#: How long the writer waits for more records once one has arrived, to write them together:
#: one transaction for many calls instead of one each (records reach the database this much later).
LINGER_S = 0.05
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
CLOSE_TIMEOUT_S = 3.0
WARN_EVERY_S = 10.0
DEVELOPMENT_KEY_FILE = "audit.key"
_STOP = object()


# ------------------------------------------------------------------------------- the writes


#: The audit tables, parents first (the foreign keys are checked at once), each with the rows
#: of a record it receives.
_AUDIT_TABLES: tuple[tuple[Table, Callable[[AuditRecord], Iterable[dict[str, Any]]]], ...] = (
    (ServiceCall.__table__, lambda r: (r.call,)),
    (IssuedCard.__table__, lambda r: r.cards),
    (FiredRule.__table__, lambda r: r.rules),
    (EvidenceRef.__table__, lambda r: r.evidence),
    (IssuedSuggestion.__table__, lambda r: r.suggestions),
)


def _insert_new_statement(dialect: str, table: Table) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING` for the table, on SQLite or PostgreSQL."""
    if dialect == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database: {dialect}")  # pragma: no cover


@dataclass(frozen=True)
class _PreparedInsert:
    """The insert of one table compiled once for one database: its SQL, and how a row becomes
    the driver's parameters (each column type's own bind processing, as a compiled execution
    applies it)."""

    sql: str
    #: the bind names in the order the driver takes them (every column of the table)
    names: tuple[str, ...]
    positional: bool
    #: (position in `names`, bind processor) of the columns whose type processes its values
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    @classmethod
    def of(cls, dialect: Dialect, table: Table) -> _PreparedInsert:
        keys = [column.key for column in table.columns]
        compiled = _insert_new_statement(dialect.name, table).compile(
            dialect=dialect, column_keys=keys, for_executemany=True
        )
        names = tuple(compiled.positiontup or compiled.bind_names.values())
        processors = []
        for position, name in enumerate(names):
            process = table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((position, process))
        return cls(compiled.string, names, dialect.positional, tuple(processors))

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The rows as the driver's parameters: tuples or dicts, as its paramstyle takes them."""
        if not self.positional:
            return [self._named(row) for row in rows] if self.processors else list(rows)
        take = itemgetter(*self.names) if len(self.names) > 1 else _one_of(self.names[0])
        if not self.processors:
            return [take(row) for row in rows]
        return [self._positional(take(row)) for row in rows]

    def _positional(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(values)
        for position, process in self.processors:
            out[position] = process(out[position])
        return tuple(out)

    def _named(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for position, process in self.processors:
            name = self.names[position]
            out[name] = process(out[name])
        return out


def _one_of(name: str) -> Callable[[dict[str, Any]], tuple[Any]]:
    return lambda row: (row[name],)


#: Per database dialect (a live engine's), its tables' prepared inserts.
_PREPARED: weakref.WeakKeyDictionary[Dialect, dict[Table, _PreparedInsert]] = (
    weakref.WeakKeyDictionary()
)


def _prepared_insert(dialect: Dialect, table: Table) -> _PreparedInsert:
    prepared = _PREPARED.setdefault(dialect, {})
    if table not in prepared:
        prepared[table] = _PreparedInsert.of(dialect, table)
    return prepared[table]


def insert_new(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the rows whose key is not in the table yet (SQLite and PostgreSQL)."""
    if rows:
        insert = _prepared_insert(connection.dialect, table)
        connection.exec_driver_sql(insert.sql, insert.parameters(rows))


def write_records(engine: Engine, records: Sequence[AuditRecord]) -> None:
    """Store the records in one transaction, then mark feedback that arrived before its card.

    The marking runs once the records are committed, as the feedback store's own matching runs
    once its items are: of feedback and its card written at the same moment, whichever commits
    last sees the other (inside one transaction, neither would see the other's uncommitted row).
    """
    uuids = [c["uuid"] for r in records for c in r.cards]
    with engine.connect() as connection:
        with connection.begin():
            for table, rows_of in _AUDIT_TABLES:
                insert_new(connection, table, [row for r in records for row in rows_of(r)])
        if uuids:
            match_feedback(connection, uuids)


# ------------------------------------------------------------------------------- the writer


class AuditWriter:
    """A bounded queue and one background thread per process that writes its records."""

    def __init__(
        self,
        write: Callable[[list[AuditRecord]], None],
        *,
        capacity: int = 1000,
        backoff: tuple[float, float] = (BACKOFF_FIRST_S, BACKOFF_MAX_S),
    ):
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._backoff = backoff
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._accepted = self._settled = 0
        self._counts = {
            "recorded": 0,
            "dropped": 0,
            "failed_writes": 0,
            "unknown_service_calls": 0,
        }
        self._last_warning = 0.0
        self.last_error: str | None = None

    # -- the request side: never blocks

    def submit(self, record: AuditRecord) -> bool:
        """Queue a record for writing; False (and counted) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._count("dropped", 1)
            self._warn("audit queue full: a record was dropped (%s dropped so far)")
            return False
        with self._lock:
            self._accepted += 1
        metrics.AUDIT_WAITING.inc()
        return True

    def count_dropped(self, size: int = 1) -> None:
        """A record that could not even be built or queued."""
        self._count("dropped", size)

    def count_unknown_service(self) -> None:
        """A POST to an id that is not a service: counted here, never recorded as a call."""
        self._count("unknown_service_calls", 1)

    def stats(self) -> dict[str, Any]:
        """Counters of this process: written, waiting, dropped, failed write attempts."""
        with self._lock:
            waiting = self._accepted - self._settled
            return {**self._counts, "waiting": waiting}

    # -- lifecycle

    def flush(self, timeout: float) -> bool:
        """Wait until every queued record is written or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._settled >= self._accepted:
                    return True
            time.sleep(0.005)
        return False

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is waiting (within `timeout`), then stop the thread."""
        self._stopping.set()
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # full: the thread is busy and sees the flag
            self._queue.put(_STOP, timeout=timeout)
        thread.join(max(0.0, deadline - time.monotonic()))

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()  # a forked worker starts its own thread
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    # -- the background thread

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._deliver(batch)
            if stop:
                return

    def _next_batch(self) -> tuple[list[AuditRecord], bool]:
        """Up to BATCH_SIZE records, and whether to stop after them.

        Waits for the first record, then up to LINGER_S for more (not when stopping).
        """
        item = self._queue.get()
        deadline = time.monotonic() + LINGER_S
        batch: list[AuditRecord] = []
        while item is not _STOP:
            batch.append(item)
            if len(batch) >= BATCH_SIZE:
                return batch, False
            remaining = 0.0 if self._stopping.is_set() else deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return batch, False
        return batch, True

    def _deliver(self, batch: list[AuditRecord]) -> None:
        delay, failures = self._backoff[0], 0
        while True:
            try:
                self._write(batch)
            except Exception as exc:  # any driver error: count, log, retry
                failures += 1
                self._failed(exc, len(batch))
                if self._stopping.is_set():
                    self._settle(len(batch), written=False)
                    log.error("audit: %d records not written at shutdown", len(batch))
                    return
                self._stopping.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            if failures:
                log.warning("audit: writes resumed after %d failed attempts", failures)
            self._settle(len(batch), written=True)
            return

    def _failed(self, exc: Exception, size: int) -> None:
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self._count("failed_writes", 1)
        log.warning(
            "audit: write of %d records failed (%s); %s waiting; retrying",
            size,
            self.last_error,
            self.stats()["waiting"],
        )

    def _settle(self, size: int, *, written: bool) -> None:
        self._count("recorded" if written else "dropped", size)
        with self._lock:
            self._settled += size
        metrics.AUDIT_WAITING.dec(size)

    def _count(self, name: str, size: int) -> None:
        with self._lock:
            self._counts[name] += size
        if name == "failed_writes":
            metrics.AUDIT_FAILED_WRITES.inc(size)
        else:
            metrics.AUDIT_RECORDS.labels("written" if name == "recorded" else name).inc(size)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(message, self.stats()["dropped"])


# ------------------------------------------------------------------------- the audit trail


@dataclass
class AuditTrail:
    """What the HTTP edge needs to record calls: the writer and the patient-key secret."""

    writer: AuditWriter
    secret: bytes | None

    def pseudonym(self, patient_id: str, fhir_server: str | None) -> str | None:
        if self.secret is None:
            return None
        return patient_key(self.secret, patient_id, fhir_server)


def development_key(folder: Path) -> bytes:
    """The key kept in the instance folder (development only): made once, shared by workers."""
    path = folder / DEVELOPMENT_KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{DEVELOPMENT_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temporary, path)  # atomic: the first worker's key wins
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip().encode()


def audit_secret(settings: Settings) -> bytes | None:
    """The patient-key secret: CDS_AUDIT_KEY; in development a key kept in the instance folder.

    Outside development mode there is no default: without CDS_AUDIT_KEY `serve` refuses to
    start, and an application built without it records calls with no patient key.
    """
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    if settings.allow_unauthenticated:
        return development_key(settings.instance_path)
    log.error("CDS_AUDIT_KEY is not set: the audit trail records calls without a patient key")
    return None


def start_audit_trail(settings: Settings, engine: Engine) -> AuditTrail:
    writer = AuditWriter(
        lambda batch: write_records(engine, batch), capacity=settings.audit_queue_size
    )
    return AuditTrail(writer, audit_secret(settings))
