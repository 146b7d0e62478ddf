"""Which FHIR servers the service may call: the SSRF rule, and FHIR base URLs compared normalised.

A request's `fhirServer` is called only when configuration allows it:
  - it equals (normalised) a base allowed for the calling client (`Caller.fhir_servers`) or for
    every client (`CDS_ALLOWED_FHIR_SERVERS`): https, or http where the allowed entry itself names
    http (a test server);
  - or, in development mode, it is a plain-http server on a loopback host.
A request without `fhirAuthorization` (an open server, as the public CDS Hooks Sandbox sends) is
served from its `fhirServer` only in development mode. Anything else is never contacted.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return parts


def normalise_base(url: str) -> str | None:
    """The base URL with scheme and host lower-case, no default port, no trailing slash.

    None when it is not an absolute http(s) URL without credentials, query or fragment.
    """
    parts = _split(url)
    if parts is None or parts.query or parts.fragment:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def is_loopback(url: str) -> bool:
    """Whether the URL's host is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    parts = _split(url)
    if parts is None:
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_under(url: str, base: str) -> bool:
    """Whether an absolute URL is the base or below it (same scheme, host, port and path prefix).

    Dot segments (`..`, also percent-encoded) are resolved first: they cannot climb out of the base.
    """
    parts = _split(url)
    normal = normalise_base(base)
    if parts is None or normal is None:
        return False
    path = posixpath.normpath(unquote(parts.path)) if parts.path else ""
    target = normalise_base(parts._replace(path=path, query="", fragment="").geturl())
    return target is not None and (target == normal or target.startswith(f"{normal}/"))


@dataclass(frozen=True)
class AccessPolicy:
    """The FHIR servers one call may use."""

    allowed: tuple[str, ...] = ()
    development: bool = False

    @classmethod
    def of(cls, *allowed: Iterable[str], development: bool = False) -> AccessPolicy:
        bases = (normalise_base(url) for group in allowed for url in group)
        return cls(tuple(sorted({b for b in bases if b})), development)

    def refusal(self, fhir_server: str | None, has_token: bool) -> str | None:
        """Why this call may not use `fhir_server`; None when it may."""
        if not fhir_server:
            return "the request has no fhirServer to fetch it from"
        base = normalise_base(fhir_server)
        if base is None:
            return "fhirServer is not a valid http(s) base URL"
        if not has_token and not self.development:
            return "the request has no fhirAuthorization (open FHIR servers: development mode only)"
        if base in self.allowed:
            return None
        if self.development and base.startswith("http://") and is_loopback(base):
            return None
        return "fhirServer is not an allowed FHIR server for this client"
