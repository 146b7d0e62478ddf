"""Record every service call in the audit trail once its answer is built, whatever the status.

The service view notes what it parsed and decided (`note_request`, `note_decision`); an
`after_request` hook builds the record (pure core) and hands it to the per-process writer, which
never blocks. Any failure here is logged and counted, and the answer goes out unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import uuid_utils
from flask import Flask, Response, g, request

from .. import metrics
from ..core.audit import AuditRecord, CallFacts, Client, audit_record
from ..core.envelope import HookRequest
from ..core.pipeline import Decision
from .caller import current_caller
from .state import ServiceState, state

log = logging.getLogger("cds_service.audit")

START_KEY = "cds_service.started"
SERVICE_ENDPOINT = "services.call_service"


class _StampStart:
    """WSGI middleware: notes when a request arrived, so that latency covers every hook."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[START_KEY] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


def note_request(hook_request: HookRequest) -> None:
    """The view parsed the envelope: the audit records hook, hookInstance and patient key."""
    g.cds_audit_request = hook_request


def note_decision(decision: Decision) -> None:
    """The view decided: the audit records the cards, the rules and their evidence."""
    g.cds_audit_decision = decision


def current_client() -> Client | None:
    """The authenticated client of this request, as the audit and feedback record it."""
    caller = current_caller()
    return Client(caller.issuer, caller.tenant, caller.jti) if caller else None


def _latency_ms() -> float:
    started = request.environ.get(START_KEY)
    return (time.perf_counter() - started) * 1000 if started is not None else 0.0


def build_record(s: ServiceState, status: int) -> AuditRecord:
    hook_request: HookRequest | None = g.get("cds_audit_request")
    decision: Decision | None = g.get("cds_audit_decision")
    facts = CallFacts(
        call_id=str(uuid_utils.uuid7()),  # time-ordered: appended to its index, not scattered
        recorded_at=s.clock(),
        service_id=(request.view_args or {}).get("service_id", ""),
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
        client=current_client(),
    )
    if decision is None or status != 200:
        return audit_record(facts)
    return audit_record(
        facts, s.knowledge, decision.evaluation, decision.cards, decision.order_cards
    )


def _record_call(response: Response) -> Response:
    """Record a service call; a CORS preflight is no call, an unknown service id only counted."""
    if request.endpoint != SERVICE_ENDPOINT or request.method != "POST":
        return response
    s = state()
    record: AuditRecord | None = None
    if (request.view_args or {}).get("service_id") not in s.knowledge.services:
        if s.audit is not None:
            s.audit.writer.count_unknown_service()
        _observe(s, response.status_code, None)
        return response
    try:
        record = build_record(s, response.status_code)
        if s.audit is not None:
            s.audit.writer.submit(record)
    except Exception:  # the audit never fails the clinician's call
        if s.audit is not None:
            s.audit.writer.count_dropped()
        log.exception("audit: a service call could not be recorded")
    _observe(s, response.status_code, record)
    return response


def _observe(s: ServiceState, status: int, record: AuditRecord | None) -> None:
    """The call in the metrics: its service (a known one), status, latency, cards and rules."""
    if request.method != "POST":  # a CORS preflight is not a call
        return
    service = (request.view_args or {}).get("service_id", "")
    if service not in s.knowledge.services:
        service = metrics.UNKNOWN_SERVICE
    try:
        cards, rules = (record.cards, record.rules) if record is not None else ((), ())
        metrics.observe_call(service, status, _latency_ms() / 1000, cards, rules)
    except Exception:  # the metrics never fail the clinician's call
        log.exception("metrics: a service call could not be counted")


def init_audit(app: Flask) -> None:
    app.wsgi_app = _StampStart(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_record_call)
