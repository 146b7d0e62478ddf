"""POST /cds-services/{id}: validate the envelope, gather the data, decide, answer with cards."""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, Response

from .. import metrics
from ..core.envelope import EnvelopeError, parse_envelope
from ..core.outcome import missing_data_outcome
from ..core.pipeline import decide
from ..fhir_policy import AccessPolicy
from ..gather import DataMissing, FhirAccess, TooManyResources, gather_patient_data
from .audit import note_decision, note_request
from .body import BodyError, read_json_body
from .caller import current_caller
from .responses import error_response, json_response, unknown_service
from .state import ServiceState, state

log = logging.getLogger(__name__)
bp = Blueprint("services", __name__)


def _new_uuid() -> str:
    return str(uuid.uuid4())


def _fhir_access(s: ServiceState) -> FhirAccess | None:
    """The FHIR servers this call may fetch from: the caller's, the configured, development's."""
    if s.fhir_client is None:
        return None
    caller = current_caller()
    policy = AccessPolicy.of(
        caller.fhir_servers if caller else (),
        s.settings.allowed_fhir_servers,
        development=s.settings.allow_unauthenticated,
    )
    return FhirAccess(
        client=s.fhir_client,
        policy=policy,
        budget_seconds=s.settings.fhir_budget_seconds,
        max_pages=s.settings.fhir_max_pages,
        today=s.clock().date(),
    )


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    s = state()
    service = s.knowledge.services.get(service_id)
    if service is None:
        return unknown_service(service_id)
    try:
        body = read_json_body(s.settings.max_body_bytes, s.settings.max_json_depth)
        hook_request = parse_envelope(body, service.hook)
        note_request(hook_request)
        data = gather_patient_data(
            s.knowledge,
            hook_request,
            max_resources=s.settings.max_resources,
            fhir=_fhir_access(s),
        )
    except BodyError as exc:
        return error_response(exc.status, exc.code, exc.reason)
    except EnvelopeError as exc:
        return error_response(400, "invalid", str(exc), expression=exc.where)
    except TooManyResources as exc:
        return error_response(413, "too-costly", str(exc))
    except DataMissing as exc:
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(exc.missing.items()))
        log.info("412 for %s: missing %s", service_id, reasons)
        metrics.observe_missing(service_id, exc.missing)
        return json_response(missing_data_outcome(exc.missing), 412)
    decision = decide(
        s.knowledge,
        data.resources,
        hook_request.patient_id,
        s.clock().date(),
        s.settings.max_cards,
        _new_uuid,
    )
    note_decision(decision)
    for skipped in decision.findings.skipped:
        log.info("skipped %s: %s", skipped.reference, skipped.reason)
    return json_response({"cards": decision.cards})
