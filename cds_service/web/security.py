"""Who may call, from where, with how much: JWT authentication, CORS, and the header limit.

- Every request to a path under `/cds-services` (discovery, services, feedback, and any route
  added there later) must carry a valid JWT from a trusted client, except an `OPTIONS`
  preflight. Any failure answers 401 with `WWW-Authenticate: Bearer` and one generic message;
  the reason goes to the log with the token's `iss`, `kid` and `jti`, never the token.
  If the replay store (the database) cannot be reached, the answer is 503: never unchecked.
- In development mode (`CDS_ALLOW_UNAUTHENTICATED`) no JWT is checked and the caller is None.
- CORS (flask-cors) for the origins in `CDS_CORS_ORIGINS`, on every route; none by default.
- A request line over 4094 bytes answers 414; a header line over 8190 bytes, more than 100
  headers, or headers larger than `CDS_MAX_HEADER_BYTES` in total answer 431.
- The JWT audience is `CDS_PUBLIC_BASE_URL` plus the path (`serve` requires it outside
  development mode); no proxy header (`X-Forwarded-*`) is ever trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from sqlalchemy import Engine

from .. import metrics
from ..auth.clients import TrustedClientsError, load_trusted_clients
from ..auth.keys import ClientKeys, FetchPolicy
from ..auth.replay import ReplayGuard
from ..auth.tokens import Rejected, TokenPolicy, TokenVerifier, VerifiedToken, bearer_token
from ..core.caller import Caller
from ..settings import Settings
from ..storage.database import DatabaseUnavailable
from .caller import set_caller
from .responses import error_response

log = logging.getLogger(__name__)
EXTENSION_KEY = "cds_service.security"
PROTECTED_PREFIX = "/cds-services"
UNAUTHORIZED = "a valid bearer JWT from a trusted CDS client is required"
CORS_METHODS = ["GET", "POST", "OPTIONS"]
CORS_HEADERS = ["Authorization", "Content-Type"]
RETRY_AFTER_S = "5"
#: The classic outer limits (gunicorn's defaults): request line, one header line, header count.
MAX_REQUEST_LINE_BYTES = 4094
MAX_HEADER_LINE_BYTES = 8190
MAX_HEADER_COUNT = 100
_CONTENT_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})
_CONTENT_HEADERS_AS_HTTP = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


@dataclass(frozen=True)
class Security:
    #: None in development mode
    verifier: TokenVerifier | None
    replay: ReplayGuard | None
    public_base_url: str
    max_header_bytes: int


def init_security(app: Flask, settings: Settings, engine: Engine) -> None:
    """Install authentication, CORS and the header limit on the application."""
    app.extensions[EXTENSION_KEY] = _security(settings, engine)
    if settings.cors_origins:
        CORS(
            app,
            origins=list(settings.cors_origins),
            methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            max_age=600,
        )
    app.before_request(_limit_headers)
    app.before_request(_authenticate)


def _security(settings: Settings, engine: Engine) -> Security:
    if settings.allow_unauthenticated:
        return Security(None, None, settings.public_base_url, settings.max_header_bytes)
    if settings.trusted_clients is None:
        raise TrustedClientsError(
            "no trusted clients: set CDS_TRUSTED_CLIENTS, or use --allow-unauthenticated "
            "for development"
        )
    clients = load_trusted_clients(settings.trusted_clients)
    fetch = FetchPolicy(
        timeout_s=settings.jwks_timeout_seconds,
        cache_s=settings.jwks_cache_seconds,
        refresh_s=settings.jwks_refresh_seconds,
    )
    verifier = TokenVerifier(
        clients=clients,
        keys={issuer: ClientKeys(client, fetch) for issuer, client in clients.items()},
        policy=TokenPolicy(settings.jwt_leeway_seconds, settings.jwt_max_lifetime_seconds),
    )
    replay = ReplayGuard(engine)
    return Security(verifier, replay, settings.public_base_url, settings.max_header_bytes)


def _app_security() -> Security:
    return current_app.extensions[EXTENSION_KEY]


def protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def invoked_url(public_base_url: str) -> str:
    """The URL the client called, without the query: the audience its JWT must name."""
    url = request.base_url
    if public_base_url:
        url = public_base_url.rstrip("/") + url[len(request.host_url.rstrip("/")) :]
    return url


def _request_line_bytes() -> int:
    environ = request.environ
    target = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if query and "?" not in target:
        target = f"{target}?{query}"
    return len(request.method) + len(target) + len(environ.get("SERVER_PROTOCOL", "")) + 2


def _header_sizes(environ: dict[str, Any]) -> list[tuple[int, int]]:
    """The length of each request header's name and value, as `request.headers` lists them,
    without spelling out the names."""
    sizes = []
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in _CONTENT_HEADERS_AS_HTTP:
            name = key[5:]
        elif key in _CONTENT_HEADERS and value:
            name = key
        else:
            continue
        # a header name keeps its length as a title, but for a non-ASCII letter that may not
        sizes.append((len(name) if name.isascii() else len(name.title()), len(value)))
    return sizes


def _limit_headers() -> Response | None:
    """The request line, each header line, the header count and all headers within limits."""
    line = _request_line_bytes()
    if line > MAX_REQUEST_LINE_BYTES:
        return error_response(
            414,
            "too-costly",
            f"request line of {line} bytes, more than the limit of {MAX_REQUEST_LINE_BYTES}",
        )
    headers = _header_sizes(request.environ)
    if len(headers) > MAX_HEADER_COUNT:
        return error_response(
            431,
            "too-costly",
            f"{len(headers)} request headers, more than the limit of {MAX_HEADER_COUNT}",
        )
    longest = max((name + value + 2 for name, value in headers), default=0)
    if longest > MAX_HEADER_LINE_BYTES:
        return error_response(
            431,
            "too-costly",
            f"a request header line of {longest} bytes, more than the limit "
            f"of {MAX_HEADER_LINE_BYTES}",
        )
    limit = _app_security().max_header_bytes
    size = sum(name + value + 4 for name, value in headers)
    if size <= limit:
        return None
    return error_response(
        431, "too-costly", f"request headers of {size} bytes, more than the limit of {limit}"
    )


def _authenticate() -> Response | None:
    if request.method == "OPTIONS" or not protected(request.path):
        return None
    security = _app_security()
    if security.verifier is None or security.replay is None:
        set_caller(None)
        return None
    try:
        token = bearer_token(request.headers.get("Authorization"))
        verified = security.verifier.verify(token, invoked_url(security.public_base_url))
        if not security.replay.first_use(verified.issuer, verified.jti, verified.valid_until):
            raise _replayed(verified)
    except Rejected as exc:
        log.warning(
            "JWT rejected on %s %s: %s (iss=%r kid=%r jti=%r)",
            request.method,
            request.path,
            exc.reason,
            exc.who["iss"],
            exc.who["kid"],
            exc.who["jti"],
        )
        metrics.observe_jwt_rejection(exc.reason)
        return error_response(401, "login", UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    except DatabaseUnavailable as exc:
        log.error("JWT not checked for replay, request refused: %s", exc)
        return error_response(
            503,
            "transient",
            "the service cannot check the call right now; try again shortly",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    set_caller(_caller(verified))
    return None


def _replayed(verified: VerifiedToken) -> Rejected:
    rejected = Rejected("jti already used (replay)")
    rejected.who = {"iss": verified.issuer, "kid": verified.kid, "jti": verified.jti}
    return rejected


def _caller(verified: VerifiedToken) -> Caller:
    return Caller(
        issuer=verified.issuer,
        jti=verified.jti,
        tenant=verified.tenant,
        subject=verified.subject,
        kid=verified.kid,
        fhir_servers=verified.client.fhir_servers,
    )
