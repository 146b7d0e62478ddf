"""POST /cds-services/{id}: validate the envelope, gather the data, decide, answer with cards."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import uuid_utils
from flask import Blueprint, Response, request

from .. import metrics
from ..core.cards import answer_json
from ..core.envelope import EnvelopeError, HookRequest, parse_envelope
from ..core.order_advice import draft_orders
from ..core.outcome import missing_data_outcome
from ..core.pipeline import Decision, decide, decide_orders
from ..data_access.fhir_policy import AccessPolicy
from ..data_access.gather import DataMissing, FhirAccess, TooManyResources, gather_patient_data
from .audit import CallNotes, call_notes, open_call
from .body import BodyError, read_json_body
from .caller import current_caller
from .responses import error_response, json_response, unknown_service
from .state import ServiceState, state

log = logging.getLogger(__name__)
bp = Blueprint("services", __name__)


def _new_uuid() -> str:
    """A card's uuid: time-ordered (UUIDv7), so the audit trail's keys arrive in index order."""
    return str(uuid_utils.uuid7())


#: Cards at these indicators are answered even when the record was read incompletely.
SEVERE = ("critical", "warning")


def public_base_url(s: ServiceState) -> str:
    """Where the service's public pages live: CDS_PUBLIC_BASE_URL, else the request's own base."""
    return (s.settings.public_base_url or request.host_url).rstrip("/")


def incomplete_line(missing: dict[str, str]) -> str:
    """The one line a card carries when the record was read incompletely, naming what is missing."""
    keys = "; ".join(f"{key} ({reason})" for key, reason in sorted(missing.items()))
    return (
        f"**Record read incompletely:** missing {keys}. This card rests on what was received; "
        "other findings may not be shown."
    )


def _decide(s: ServiceState, hook_request: HookRequest, resources: list) -> Decision:
    encounter = hook_request.context.get("encounterId")
    service = s.knowledge.services[request.view_args["service_id"]]  # type: ignore[index]
    if service.advice == "orders":
        hook = s.knowledge.hooks[service.hook]
        return decide_orders(
            s.knowledge,
            resources,
            draft_orders(s.knowledge, hook_request.context, hook.data),
            hook_request.patient_id,
            s.clock().date(),
            _new_uuid,
            encounter_id=encounter if isinstance(encounter, str) else None,
            base_url=public_base_url(s),
            service=service,
        )
    return decide(
        s.knowledge,
        resources,
        hook_request.patient_id,
        s.clock().date(),
        s.settings.max_cards,
        _new_uuid,
        encounter_id=encounter if isinstance(encounter, str) else None,
        base_url=public_base_url(s),
        service=service,
    )


def _incomplete_answer(
    s: ServiceState, notes: CallNotes, hook_request: HookRequest, exc: DataMissing
) -> Response:
    """A red flag already seen is never withheld: the warning and critical cards from what was
    received, each with one line naming what is missing; without such a card, the spec's 412."""
    service_id = notes.service_id
    reasons = "; ".join(f"{k}: {v}" for k, v in sorted(exc.missing.items()))
    decision = _decide(s, hook_request, list(exc.received))
    line = incomplete_line(exc.missing)
    severe = tuple(
        replace(c, json={**c.json, "detail": f"{line}\n\n{c.json['detail']}"})
        for c in decision.cards
        if c.indicator in SEVERE
    )
    if not severe:
        log.info("412 for %s: missing %s", service_id, reasons)
        metrics.observe_missing(service_id, exc.missing)
        return json_response(missing_data_outcome(exc.missing), 412)
    notes.decision = replace(decision, cards=severe)
    log.warning(
        "record read incompletely for %s (%s): %d card(s) answered",
        service_id,
        reasons,
        len(severe),
    )
    return json_response(answer_json(severe))


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


@bp.url_value_preprocessor
def _open_call(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A call to a service opens its notes before authentication runs, so that the audit
    records it whatever answers it (a refused token, a bad body, the cards). A CORS preflight
    is no call."""
    if request.method == "POST":
        open_call((values or {}).get("service_id", ""))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    s = state()
    notes = call_notes() or open_call(service_id)
    service = s.knowledge.services.get(service_id)
    if service is None:
        return unknown_service(service_id)
    try:
        body = read_json_body(s.settings.max_body_bytes, s.settings.max_json_depth)
        hook_request = parse_envelope(body, s.knowledge.hooks[service.hook])
        notes.request = hook_request
        data = gather_patient_data(
            service,
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
        return _incomplete_answer(s, notes, hook_request, exc)
    decision = _decide(s, hook_request, data.resources)
    notes.decision = decision
    for skipped in decision.findings.skipped:
        log.info("skipped %s: %s", skipped.reference, skipped.reason)
    return json_response(answer_json(decision.cards))
