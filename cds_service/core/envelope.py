"""Validate the CDS Hooks request envelope (CDS Hooks 2.0 "Calling a CDS Service").

The envelope is checked strictly: required members, types, the hook's required context fields.
Unknown members and `extension` objects are ignored, as the specification asks. The FHIR content
inside (context resources, prefetch) is not validated here: it is read leniently, per resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .text import is_blank, is_uri

#: FHIR resource id: used in URLs, so held to the specification's pattern.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MAX_STRING = 2048


@dataclass(frozen=True)
class ContextField:
    required: bool
    kind: str  # "id" (a FHIR id), "string", "object", "array"


@dataclass(frozen=True)
class HookDef:
    """One hook of the registry (knowledge/hooks.yaml): its context fields, the fields a prefetch
    template may name, and the context fields that carry FHIR data (and their shape)."""

    id: str
    context: Mapping[str, ContextField]
    prefetch_tokens: tuple[str, ...] = ()
    data: Mapping[str, str] = field(default_factory=dict)


_AUTH_FIELDS = {
    "access_token": str,
    "token_type": str,
    "expires_in": int,
    "scope": str,
    "subject": str,
}


#: Optional members of the request; CDS Hooks "Use of JSON": elements SHALL NOT be null.
OPTIONAL_MEMBERS = ("fhirServer", "fhirAuthorization", "prefetch", "extension")


class EnvelopeError(ValueError):
    """The request envelope is malformed; `where` names the member at fault."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class FhirAuthorization:
    """The bearer token a client lends us. Never logged, stored or shown (repr hides it)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    patient_id: str
    fhir_server: str | None
    fhir_authorization: FhirAuthorization | None
    prefetch: Mapping[str, Any] | None


def _string(value: object, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise EnvelopeError(where, "must be a string")
    if not allow_empty and is_blank(value):
        raise EnvelopeError(where, "must not be empty")
    if len(value) > MAX_STRING:
        raise EnvelopeError(where, f"longer than {MAX_STRING} characters")
    return value


def _check_context(hook: HookDef, context: object) -> Mapping[str, Any]:
    if not isinstance(context, Mapping):
        raise EnvelopeError("context", "must be an object")
    for name, spec in hook.context.items():
        where = f"context.{name}"
        if name not in context:
            if spec.required:
                raise EnvelopeError(where, f"is required by the {hook.id} hook")
            continue
        value = context[name]
        if spec.kind in ("string", "id"):
            _string(value, where)
            if spec.kind == "id" and not FHIR_ID.fullmatch(value):
                raise EnvelopeError(where, "is not a valid FHIR id ([A-Za-z0-9-.], 1-64 chars)")
        elif spec.kind == "object" and not isinstance(value, Mapping):
            raise EnvelopeError(where, "must be an object")
        elif spec.kind == "array" and not isinstance(value, list):
            raise EnvelopeError(where, "must be an array")
    return context


def _check_authorization(value: object) -> FhirAuthorization:
    if not isinstance(value, Mapping):
        raise EnvelopeError("fhirAuthorization", "must be an object")
    for name, kind in _AUTH_FIELDS.items():
        where = f"fhirAuthorization.{name}"
        if name not in value:
            raise EnvelopeError(where, "is required")
        item = value[name]
        if kind is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise EnvelopeError(where, "must be an integer")
        if kind is str:
            _string(item, where)
    if value["token_type"] != "Bearer":
        raise EnvelopeError("fhirAuthorization.token_type", "must be 'Bearer'")
    patient = value.get("patient")
    if "patient" in value:
        _string(patient, "fhirAuthorization.patient")
    return FhirAuthorization(
        access_token=value["access_token"],
        token_type=value["token_type"],
        expires_in=value["expires_in"],
        scope=value["scope"],
        subject=value["subject"],
        patient=patient,
    )


def parse_envelope(body: object, service_hook: HookDef) -> HookRequest:
    """A validated `HookRequest` for the service's hook (from the hook registry), or
    `EnvelopeError` naming the first problem."""
    if not isinstance(body, Mapping):
        raise EnvelopeError("body", "must be a JSON object")
    for name in OPTIONAL_MEMBERS:
        if name in body and body[name] is None:
            raise EnvelopeError(name, "must not be null (CDS Hooks: omit it instead)")
    for name in ("hook", "hookInstance", "context"):
        if name not in body:
            raise EnvelopeError(name, "is required")
    hook = _string(body["hook"], "hook")
    if hook != service_hook.id:
        raise EnvelopeError("hook", f"is {hook!r} but this service answers {service_hook.id!r}")
    hook_instance = _string(body["hookInstance"], "hookInstance")
    context = _check_context(service_hook, body["context"])
    fhir_server = body.get("fhirServer")
    if fhir_server is not None:
        _string(fhir_server, "fhirServer")
        if not re.match(r"https?://", fhir_server) or not is_uri(fhir_server):
            raise EnvelopeError("fhirServer", "must be an absolute http(s) URL")
    authorization = None
    if body.get("fhirAuthorization") is not None:
        authorization = _check_authorization(body["fhirAuthorization"])
        if fhir_server is None:
            raise EnvelopeError("fhirServer", "is required when fhirAuthorization is present")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        raise EnvelopeError("prefetch", "must be an object")
    if "extension" in body and not isinstance(body["extension"], Mapping):
        raise EnvelopeError("extension", "must be an object")
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        patient_id=context["patientId"],
        fhir_server=fhir_server,
        fhir_authorization=authorization,
        prefetch=prefetch,
    )
