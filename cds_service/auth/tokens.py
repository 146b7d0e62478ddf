"""The bearer JWT of a CDS client: read it from the header, and verify it.

The checks run cheapest first, and everything that can be decided without a key is decided
before a key is looked up, so a token that fails them never causes a JWK Set fetch:

1. `Authorization: Bearer <token>`, one header, at most `MAX_TOKEN_CHARS`;
2. header: `alg` accepted (asymmetric only), `kid` given, `typ` JWT when present;
3. `iss` a trusted client, and `jku` (when given) in that client's `allowed_jku`;
4. claims: `iss`, `aud`, `exp`, `iat`, `jti` present; `aud` is (or contains) the URL invoked;
   `exp`, `nbf`, `iat` within the leeway; lifetime within the maximum; `jti` a short string;
   `tenant` allowed when the client names tenants;
5. the key chosen by `kid`, the algorithm fitting that key, the signature, and 4 again on the
   verified claims.

The replay check (`jti` seen before) is `replay.ReplayGuard`, run after this succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from .algorithms import ACCEPTED_ALGORITHMS, algorithms_for_key
from .clients import TrustedClient
from .keys import ClientKeys, KeyNotFound

MAX_TOKEN_CHARS = 4096
MAX_JTI_CHARS = 256  # the replay store's column
MAX_KID_CHARS = 256
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
#: RFC 6750 §2.1: the scheme is case-insensitive; the token is a b64token.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_SHOWN_CHARS = 80
#: PyJWT switches every claim check off with the signature check; switch them back on.
UNSIGNED_CHECKS = {
    "verify_signature": False,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_aud": True,
    "verify_iss": True,
}


class Rejected(Exception):
    """The token is not accepted. `reason` and `who` are for the log, never for the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        #: `iss`, `kid` and `jti` as the token states them (unverified, shortened)
        self.who: dict[str, str | None] = {"iss": None, "kid": None, "jti": None}


@dataclass(frozen=True)
class VerifiedToken:
    client: TrustedClient
    jti: str
    #: the last moment the token could be accepted, epoch seconds (`exp` plus the leeway):
    #: its `jti` is kept at least this long
    valid_until: int
    kid: str
    tenant: str | None = None
    subject: str | None = None

    @property
    def issuer(self) -> str:
        return self.client.issuer


@dataclass(frozen=True)
class TokenPolicy:
    leeway_s: int
    max_lifetime_s: int


def bearer_token(authorization: str | None) -> str:
    """The token of the request's `Authorization: Bearer` header.

    Under WSGI, repeated headers arrive joined by commas, which no b64token contains: two
    `Authorization` headers are refused here as a malformed one.
    """
    if authorization is None:
        raise Rejected("no Authorization header")
    if len(authorization) > MAX_TOKEN_CHARS + 16:
        raise Rejected(f"Authorization header longer than {MAX_TOKEN_CHARS} characters")
    match = _BEARER.fullmatch(authorization)
    if not match:
        raise Rejected("Authorization is not a Bearer token")
    return match.group(1)


@dataclass
class TokenVerifier:
    """Verifies CDS client JWTs against the trusted clients."""

    clients: Mapping[str, TrustedClient]
    keys: Mapping[str, ClientKeys]
    policy: TokenPolicy
    _options: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self._options = {"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True}

    def verify(self, token: str, audience: str) -> VerifiedToken:
        """The verified token, or `Rejected` with the reason and who the token claims to be."""
        header, payload = _peek(token)
        try:
            return self._verify(token, header, payload, audience)
        except Rejected as exc:
            exc.who = _who(header, payload)
            raise

    def _verify(
        self, token: str, header: dict[str, Any], payload: dict[str, Any], audience: str
    ) -> VerifiedToken:
        alg, kid, jku = _check_header(header)
        client = self.clients.get(payload["iss"]) if isinstance(payload.get("iss"), str) else None
        if client is None:
            raise Rejected("issuer not trusted")
        keys = self.keys[client.issuer]
        _no_key(keys.check_jku, jku)
        self._check_claims(token, audience, client, verified_key=None)
        key = _no_key(keys.signing_key, kid, jku)
        algorithms = algorithms_for_key(key)
        if alg not in algorithms:
            raise Rejected(f"algorithm {alg} does not fit key {kid}")
        claims = self._check_claims(token, audience, client, verified_key=(key, algorithms))
        return VerifiedToken(
            client=client,
            jti=claims["jti"],
            valid_until=int(claims["exp"]) + self.policy.leeway_s,
            kid=kid,
            tenant=claims["tenant"] if isinstance(claims.get("tenant"), str) else None,
            subject=claims.get("sub"),
        )

    def _check_claims(
        self,
        token: str,
        audience: str,
        client: TrustedClient,
        verified_key: tuple[PyJWK, tuple[str, ...]] | None,
    ) -> dict[str, Any]:
        """The claims after PyJWT's checks and this service's; the signature too, given a key."""
        if verified_key is None:  # every claim check, no signature yet
            key: Any = ""
            algorithms = None
            options = self._options | UNSIGNED_CHECKS
        else:
            key, algorithms = verified_key[0].key, list(verified_key[1])
            options = self._options
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                options=options,  # type: ignore[arg-type]
                audience=audience,
                issuer=client.issuer,
                leeway=self.policy.leeway_s,
            )
        except PyJWTError as exc:
            raise Rejected(f"{type(exc).__name__}: {exc}") from None
        self._check_service_rules(claims, client)
        return claims

    def _check_service_rules(self, claims: dict[str, Any], client: TrustedClient) -> None:
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if lifetime > self.policy.max_lifetime_s:
            raise Rejected(f"lifetime {lifetime} s over {self.policy.max_lifetime_s} s")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise Rejected("jti is not a string of 1 to 256 characters")
        if client.tenants and claims.get("tenant") not in client.tenants:
            raise Rejected("tenant not allowed for this issuer")


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: only to choose the client and key, and for the log."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Rejected(f"token longer than {MAX_TOKEN_CHARS} characters")
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, options={"verify_signature": False})
    except PyJWTError as exc:
        raise Rejected(f"not a JWT: {exc}") from None
    return header, payload


def _check_header(header: dict[str, Any]) -> tuple[str, str, str | None]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
        raise Rejected(f"algorithm {_shown(alg)} not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS:
        raise Rejected("kid missing or not a short string")
    if "typ" in header and str(header["typ"]).upper() != "JWT":
        raise Rejected(f"typ {_shown(header['typ'])} is not JWT")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise Rejected("jku is not a string")
    return alg, kid, jku


def _no_key(find: Any, *args: Any) -> Any:
    try:
        return find(*args)
    except KeyNotFound as exc:
        raise Rejected(str(exc)) from None


def _who(header: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        "iss": _shown(payload.get("iss")),
        "kid": _shown(header.get("kid")),
        "jti": _shown(payload.get("jti")),
    }


def _shown(value: Any) -> str | None:
    """A claim as the log may show it: a string, shortened (it comes from an unverified token)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
