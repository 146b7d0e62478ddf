"""Record every service call in the audit trail once its answer is built, whatever the status.

A request routed to the service view opens its one `CallNotes` (before authentication, so that
a refused call is recorded too); the view notes in it what it parsed and decided. An
`after_request` hook records every call that has notes: it builds the record (pure core) and
hands it to the per-process writer, which never blocks. Any failure here is logged and counted,
and the answer goes out unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import uuid_utils
from flask import Flask, Response, g, request

from .. import metrics
from ..core.audit import AuditRecord, CallFacts, audit_record
from ..core.envelope import HookRequest
from ..core.pipeline import Decision
from .caller import current_caller
from .state import ServiceState, state

log = logging.getLogger("cds_service.audit")

START_KEY = "cds_service.started"


class _StampStart:
    """WSGI middleware: notes when a request arrived, so that latency covers every hook."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[START_KEY] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


@dataclass
class CallNotes:
    """What the audit records of one service call, filled in as the view answers it."""

    service_id: str
    #: the envelope, once parsed: hook, hookInstance and patient key
    request: HookRequest | None = None
    #: the decision answered: the cards, the rules and their evidence
    decision: Decision | None = None


def open_call(service_id: str) -> CallNotes:
    """Open the one set of notes of this request's service call: the call will be recorded."""
    notes = CallNotes(service_id)
    g.cds_call = notes
    return notes


def call_notes() -> CallNotes | None:
    """The notes of this request's service call; None for any other request."""
    return g.get("cds_call")


def _latency_ms() -> float:
    started = request.environ.get(START_KEY)
    return (time.perf_counter() - started) * 1000 if started is not None else 0.0


def build_record(s: ServiceState, notes: CallNotes, status: int) -> AuditRecord:
    hook_request = notes.request
    facts = CallFacts(
        call_id=str(uuid_utils.uuid7()),  # time-ordered: appended to its index, not scattered
        recorded_at=s.clock(),
        service_id=notes.service_id,
        status=status,
        latency_ms=_latency_ms(),
        knowledge_version=s.knowledge.version,
        hook=hook_request.hook if hook_request else None,
        hook_instance=hook_request.hook_instance if hook_request else None,
        patient_key=(
            s.audit.pseudonym(hook_request.patient_id, hook_request.fhir_server)
            if s.audit and hook_request
            else None
        ),
        client=current_caller(),
    )
    return audit_record(facts, notes.decision if status == 200 else None)


def _record_call(response: Response) -> Response:
    """Record a service call (a request with notes); an unknown service id is only counted."""
    notes = call_notes()
    if notes is None:
        return response
    s = state()
    record: AuditRecord | None = None
    if notes.service_id not in s.knowledge.services:
        if s.audit is not None:
            s.audit.writer.count_unknown_service()
        _observe(metrics.UNKNOWN_SERVICE, response.status_code, None)
        return response
    try:
        record = build_record(s, notes, response.status_code)
        if s.audit is not None:
            s.audit.writer.submit(record)
    except Exception:  # the audit never fails the clinician's call
        if s.audit is not None:
            s.audit.writer.count_dropped()
        log.exception("audit: a service call could not be recorded")
    _observe(notes.service_id, response.status_code, record)
    return response


def _observe(service: str, status: int, record: AuditRecord | None) -> None:
    """The call in the metrics: its service (a known one), status, latency, cards and rules."""
    try:
        cards, rules = (record.cards, record.rules) if record is not None else ((), ())
        metrics.observe_call(service, status, _latency_ms() / 1000, cards, rules)
    except Exception:  # the metrics never fail the clinician's call
        log.exception("metrics: a service call could not be counted")


def init_audit(app: Flask) -> None:
    app.wsgi_app = _StampStart(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_record_call)
