"""Who is calling: the authenticated CDS client of a call, as the audit and feedback record it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A CDS client whose JWT was verified. Never holds the token itself."""

    issuer: str
    jti: str | None = None
    tenant: str | None = None
    subject: str | None = None
    kid: str | None = None
    #: FHIR base URLs this client may send as `fhirServer` (trusted-clients file).
    fhir_servers: tuple[str, ...] = ()
