"""Run the service on granian (`cds-service serve`).

granian is a pre-fork server: a main process that binds the socket and supervises worker
processes (restarted when one dies), each running the Flask application on a pool of threads.
Its HTTP layer (Rust, hyper on tokio) reads a request's headers and body before a worker thread
sees it, so a client that sends slowly holds only a cheap socket, never a thread: slow clients
cannot starve the service. The request line, one header line and the header count are checked
by the application (`cds_service.web.limits`), with an OperationOutcome; granian itself refuses
more than 100 header lines (431) and a header block over its buffer.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing.util
import os
from collections.abc import Callable
from typing import Any

from .auth.clients import TrustedClientsError, load_trusted_clients
from .core.knowledge import KnowledgeError
from .data_access.fhir_policy import normalise_base
from .knowledge_files import load_knowledge
from .metrics_dir import prepare_multiprocess_dir
from .settings import Settings
from .storage.database import make_engine, schema_problem

log = logging.getLogger("cds_service.server")
#: Threads per worker process that run the application.
THREADS_PER_WORKER = 4
#: A client has this long to send its request headers (then the connection is closed).
HEADER_READ_TIMEOUT_MS = 10_000
#: A client has this long to send its request body (then it gets 408).
BODY_READ_TIMEOUT_S = 10.0
#: On SIGTERM, a worker has this long to finish its calls and write its audit records.
GRACEFUL_TIMEOUT_S = 10
#: Allocations between two young-generation collections in a worker (Python's default: 700).
#: A call allocates tens of thousands of objects that reference counting frees; collecting
#: every 700 of them scans the same live objects over and over (about 3-5% of a call's work).
GC_YOUNG_THRESHOLD = 50_000


class ServeError(Exception):
    """The service cannot start; the message is the one-line reason."""


def check_startable(settings: Settings) -> None:
    """Refuse to start, with a one-line reason, when the service could not answer safely."""
    try:
        load_knowledge(settings.knowledge_dir)
    except KnowledgeError as exc:
        reason = f"knowledge invalid: {exc.problems[0]} (run `cds-service knowledge check`)"
        raise ServeError(reason) from None
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=settings.database_timeout_seconds)
    try:
        problem = schema_problem(engine, url)
    finally:
        engine.dispose()
    if problem:
        raise ServeError(problem)
    _check_trust(settings)
    _check_audit_key(settings)
    _check_public_base_url(settings)


def _check_public_base_url(settings: Settings) -> None:
    """Outside development mode JWT audiences come from configuration, never from the caller."""
    if settings.allow_unauthenticated:
        return
    if not settings.public_base_url:
        raise ServeError(
            "CDS_PUBLIC_BASE_URL is not set: JWT audiences must name the service's public URL "
            "(for example https://cds.example.org), never the caller's Host header"
        )
    if normalise_base(settings.public_base_url) is None:
        raise ServeError(f"CDS_PUBLIC_BASE_URL is not an http(s) URL: {settings.public_base_url!r}")


def _check_audit_key(settings: Settings) -> None:
    """Outside development mode the patient-key secret must be set: no silent default."""
    if settings.audit_key is None and not settings.allow_unauthenticated:
        raise ServeError(
            "CDS_AUDIT_KEY is not set: the audit trail needs a secret (32+ characters) "
            "for its pseudonymous patient keys"
        )


def _check_trust(settings: Settings) -> None:
    """JWTs can be checked: a valid trusted-clients file, unless in development mode."""
    if settings.allow_unauthenticated:
        return
    if settings.trusted_clients is None:
        raise ServeError(
            "no trusted clients: set CDS_TRUSTED_CLIENTS to the trusted-clients file, "
            "or use --allow-unauthenticated for development"
        )
    try:
        load_trusted_clients(settings.trusted_clients)
    except TrustedClientsError as exc:
        raise ServeError(f"trusted clients invalid: {exc}") from None


def _worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges stop counting in the metrics."""
    from .metrics import worker_exited

    worker_exited(pid)


def worker_app(settings: Settings, build: Callable[[Settings], Any] | None = None) -> Any:
    """The application one worker process runs; its audit records are written when it stops."""
    from . import create_app
    from .web.state import EXTENSION_KEY
    from .web.timeout import enforce_call_timeout

    app = (build or create_app)(settings)
    state = app.extensions[EXTENSION_KEY]
    if state.audit is not None:
        # a worker process ends through multiprocessing, which runs its finalizers, not atexit
        multiprocessing.util.Finalize(None, state.audit.writer.close, exitpriority=10)
    multiprocessing.util.Finalize(None, _worker_exited, args=(os.getpid(),), exitpriority=5)
    enforce_call_timeout(app, settings.call_timeout_seconds, hard_stop=True)
    return served(app, settings)


def served(app: Any, settings: Settings) -> Any:
    """A built WSGI application as a worker serves it: its body read first, on the worker's
    threads, with the worker's collector settings."""
    from .web.buffered import BufferedWSGI

    # What exists now (knowledge, models, the app) lives as long as the worker: keep it out
    # of the garbage collector's scans, which otherwise grow with every large request.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return BufferedWSGI(
        app,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=BODY_READ_TIMEOUT_S,
        threads=THREADS_PER_WORKER,
    )


def granian_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
) -> Any:
    """The granian server for the service (not started)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    server = Granian(
        "cds_service",  # a label only: the application comes from `worker_app` below
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        http="1",
        workers=workers,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_access=False,  # no access log: a query string may carry a token
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT_S,
    )
    return server


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    build: Callable[[Settings], Any] | None = None,
) -> None:
    try:  # before any worker, and before prometheus_client is imported
        prepare_multiprocess_dir()
    except OSError as exc:
        raise ServeError(f"metrics folder unusable (PROMETHEUS_MULTIPROC_DIR): {exc}") from None
    check_startable(settings)
    if settings.allow_unauthenticated:
        log.warning(
            "DEVELOPMENT MODE: --allow-unauthenticated is set; every caller is trusted and "
            "no JWT is checked. Never run this way with patient data."
        )
    server = granian_server(settings, host=host, port=port, workers=workers)
    server.serve(target_loader=lambda _label: worker_app(settings, build))
