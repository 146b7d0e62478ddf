"""A trusted client's signing keys: inline, or fetched from its `jwks_url` or an allowed `jku`.

Fetching uses PyJWT's `PyJWKClient`, configured for this service: a short timeout (its default is
30 s), the JWK Set cached for a lifetime, at most one refresh per interval when a token names an
unknown `kid`, no redirects. A `jku` that is not in the client's `allowed_jku` is never contacted.
One `PyJWKClient` per allowed URL, made at start-up, so no URL from a token creates a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWTError

from .clients import TrustedClient

USER_AGENT = "back-spasm-cds-service"


class KeyNotFound(Exception):
    """No key of this client can verify the token; the message says why (for the log)."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float
    cache_s: float
    refresh_s: float


class ClientKeys:
    """Finds the key a token names (`kid`, and `jku` when it gives one) for one client."""

    def __init__(self, client: TrustedClient, policy: FetchPolicy):
        self._client = client
        urls = {*client.allowed_jku, *([client.jwks_url] if client.jwks_url else [])}
        self._remote = {url: _jwk_client(url, policy) for url in sorted(urls)}

    def check_jku(self, jku: str | None) -> None:
        """Refuse a token whose `jku` this client does not allow (before anything is fetched)."""
        if jku is not None and jku not in self._client.allowed_jku:
            raise KeyNotFound("jku not allowed for this issuer")

    def signing_key(self, kid: str, jku: str | None) -> PyJWK:
        self.check_jku(jku)
        inline = self._client.keys.get(kid)
        if inline is not None:
            return inline
        url = jku or self._client.jwks_url
        if url is None:
            raise KeyNotFound("unknown kid")
        try:
            return self._remote[url].get_signing_key(kid)
        except PyJWKClientConnectionError as exc:
            raise KeyNotFound(f"JWK Set unavailable at {url}: {exc}") from None
        except PyJWTError:
            raise KeyNotFound(f"unknown kid (JWK Set at {url})") from None


def _jwk_client(url: str, policy: FetchPolicy) -> PyJWKClient:
    return PyJWKClient(
        url,
        cache_jwk_set=True,
        lifespan=policy.cache_s,
        timeout=policy.timeout_s,
        cooldown_duration=policy.refresh_s,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )
