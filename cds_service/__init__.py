"""Back-spasm CDS Hooks service: `create_app` builds the Flask application."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import weakref
from collections.abc import Callable

from flask import Flask

from .data_access.fhir_client import FhirClient
from .knowledge_files import load_knowledge
from .settings import Settings
from .storage.database import make_engine

__all__ = ["Settings", "create_app"]


def _warm_models() -> None:
    """Build the FHIR model validators now, so that the first clinical call does not pay for it."""
    from .core.findings import MODELS

    for name, model in MODELS.items():
        with contextlib.suppress(ValueError):  # only the validator build matters
            model.model_validate({"resourceType": name})


def _fhir_client(app: Flask, settings: Settings) -> FhirClient:
    """The application's one pooled FHIR client, closed when the application goes away."""
    client = FhirClient(
        connect_timeout=settings.fhir_connect_timeout_seconds,
        read_timeout=settings.fhir_read_timeout_seconds,
        max_body_bytes=settings.max_body_bytes,
    )
    weakref.finalize(app, client.close)
    return client


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], dt.datetime] | None = None
) -> Flask:
    """The service application. Knowledge is loaded and compiled once, here."""
    from .storage.audit_trail import start_audit_trail
    from .web import about, discovery, feedback, ops, services
    from .web.audit import init_audit
    from .web.errors import register_error_handlers
    from .web.security import init_security
    from .web.state import EXTENSION_KEY, ServiceState, utc_now

    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    knowledge = load_knowledge(settings.knowledge_dir)
    engine = make_engine(
        settings.resolved_database_url(), connect_timeout_s=settings.database_timeout_seconds
    )
    app.extensions[EXTENSION_KEY] = ServiceState(
        settings,
        knowledge,
        engine,
        clock or utc_now,
        fhir_client=_fhir_client(app, settings),
        audit=start_audit_trail(settings, engine),
    )
    init_security(app, settings, engine)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(services.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(about.bp)
    init_audit(app)
    register_error_handlers(app)
    _warm_models()
    return app
