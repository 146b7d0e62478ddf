"""Who is calling: the authenticated CDS client of the current request, if any."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g


@dataclass(frozen=True)
class Caller:
    """A CDS client whose JWT was verified. Never holds the token itself."""

    issuer: str
    jti: str
    tenant: str | None = None
    subject: str | None = None
    kid: str | None = None
    #: FHIR base URLs this client may send as `fhirServer` (trusted-clients file).
    fhir_servers: tuple[str, ...] = ()


def set_caller(caller: Caller | None) -> None:
    g.cds_caller = caller


def current_caller() -> Caller | None:
    """The verified caller of this request; None in development mode or outside a request."""
    return g.get("cds_caller")
