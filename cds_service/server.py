"""Run the service on gunicorn (`cds-service serve`)."""

from __future__ import annotations

import gc
import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from .auth.clients import TrustedClientsError, load_trusted_clients
from .core.knowledge import KnowledgeError
from .db import make_engine, schema_problem
from .knowledge_files import load_knowledge
from .metrics_dir import prepare_multiprocess_dir
from .settings import Settings

log = logging.getLogger("cds_service.server")
#: gunicorn's defaults, stated: request line, header count, one header line (bytes)
GUNICORN_LIMIT_REQUEST_LINE = 4094
GUNICORN_LIMIT_REQUEST_FIELDS = 100
GUNICORN_LIMIT_REQUEST_FIELD_SIZE = 8190


class ServeError(Exception):
    """The service cannot start; the message is the one-line reason."""


class ServiceApplication(BaseApplication):  # type: ignore[misc]
    """A gunicorn application whose workers each build the Flask app with the same settings."""

    def __init__(self, settings: Settings, options: dict[str, Any]):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def build_app(self) -> Any:
        from . import create_app

        return create_app(self.settings)

    def load(self) -> Any:
        app = self.build_app()
        # What exists now (knowledge, models, the app) lives as long as the worker: keep it out
        # of the garbage collector's scans, which otherwise grow with every large request.
        gc.freeze()
        return app


def check_startable(settings: Settings) -> None:
    """Refuse to start, with a one-line reason, when the service could not answer safely."""
    try:
        load_knowledge(settings.knowledge_dir)
    except KnowledgeError as exc:
        reason = f"knowledge invalid: {exc.problems[0]} (run `cds-service knowledge check`)"
        raise ServeError(reason) from None
    url = settings.resolved_database_url()
    engine = make_engine(url)
    try:
        problem = schema_problem(engine, url)
    finally:
        engine.dispose()
    if problem:
        raise ServeError(problem)
    _check_trust(settings)
    _check_audit_key(settings)


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


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "cds-service",
        # gunicorn's runtime control socket sits at one path per user: several services on a
        # host would fight over it, and this service is managed by signals, not by gunicornc.
        "control_socket_disable": True,
        # the outer guard on request size before the application's own limits (431, 414)
        "limit_request_line": GUNICORN_LIMIT_REQUEST_LINE,
        "limit_request_fields": GUNICORN_LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": GUNICORN_LIMIT_REQUEST_FIELD_SIZE,
        "child_exit": _worker_exited,
    }


def _worker_exited(_arbiter: Any, worker: Any) -> None:
    """The server hook the metrics need: a worker is gone, its live gauges stop counting."""
    from .metrics import worker_exited

    worker_exited(worker.pid)


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
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
    ServiceApplication(settings, gunicorn_options(host, port, workers)).run()
