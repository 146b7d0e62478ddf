"""JWT authentication (CDS Hooks 2.0 "Trusting CDS Clients"): what gets in, and what does not.

Real keys, real signatures (PyJWT with cryptography), the real application in process, and real
HTTP on loopback for JWK Sets: the trusted client's key server counts every request, and a
"canary" server stands for a URL no token may make the service fetch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Flask, jsonify
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.instances import migrated_instance
from support.jwt_clients import (
    ALGORITHMS,
    DISCOVERY,
    DROP,
    ENCOUNTER_START,
    FEEDBACK,
    ISSUER,
    KEY_KIND,
    LOCAL,
    PATIENT_VIEW,
    JwksServer,
    SigningKey,
    b64url,
    bearer,
    claims,
    generate_key,
    make_auth_app,
    sign,
)

from cds_service.auth.tokens import MAX_TOKEN_CHARS
from cds_service.web.caller import current_caller
from cds_service.web.security import UNAUTHORIZED

TENANT_ISSUER = "https://tenant-ehr.example.org"
FHIR_SERVER = "https://fhir.example.org/r4"
GENERIC_401 = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "login", "diagnostics": UNAUTHORIZED}],
}


def assert_unauthorized(response: Any) -> None:
    """401, the bearer challenge, and the same generic body whatever the reason."""
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == GENERIC_401


def service_body() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": "pt-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "pt-1"},
            "conditions": None,
            "labs": None,
            "findings": None,
        },
    }


# ------------------------------------------------------------------------ the attack corpus


@dataclass
class CorpusEnv:
    client: FlaskClient
    key: SigningKey  # trusted, published by `jwks` (ES384)
    tenant_key: SigningKey  # trusted inline for TENANT_ISSUER (ES256)
    jwks: JwksServer
    canary: JwksServer

    def token(self, path: str = DISCOVERY, alg: str = "ES384", **changes: Any) -> str:
        return sign(self.key, alg, claims(LOCAL + path, **changes))


@dataclass
class Attempt:
    """One attack: the request, and the reason the log must give for refusing it."""

    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    path: str = DISCOVERY
    method: str = "GET"
    query: dict[str, str] = field(default_factory=dict)

    def send(self, client: FlaskClient) -> Any:
        body = service_body() if self.method == "POST" else None
        return client.open(
            self.path, method=self.method, headers=self.headers, query_string=self.query, json=body
        )


@pytest.fixture(scope="module")
def corpus_env(tmp_path_factory, signing_keys) -> Iterator[CorpusEnv]:
    jwks, canary = JwksServer(), JwksServer()
    jwks.server.start()
    canary.server.start()
    key = signing_keys["P-384"]
    tenant_key = signing_keys["P-256"]
    url = jwks.publish("/jwks.json", {"keys": [key.public_jwk(), signing_keys["RSA"].public_jwk()]})
    canary.publish("/jwks.json", key.jwks())
    clients = [
        {"issuer": ISSUER, "jwks_url": url, "allowed_jku": [url], "fhir_servers": [FHIR_SERVER]},
        {"issuer": TENANT_ISSUER, "jwks": tenant_key.jwks(), "tenants": ["tenant-a"]},
    ]
    app = make_auth_app(tmp_path_factory.mktemp("corpus"), clients)
    env = CorpusEnv(app.test_client(), key, tenant_key, jwks, canary)
    primed = env.client.get(DISCOVERY, headers=bearer(env.token()))
    assert primed.status_code == 200, primed.get_data(as_text=True)
    assert jwks.requests() == 1  # the service's one normal fetch of the client's keys
    try:
        yield env
    finally:
        jwks.server.stop()
        canary.server.stop()


def _unsigned(env: CorpusEnv, alg: str) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": env.key.kid}
    return f"{b64url(header)}.{b64url(claims(LOCAL + DISCOVERY))}."


def _hmac_signed(env: CorpusEnv, alg: str, secret: bytes) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": env.key.kid}
    signing_input = f"{b64url(header)}.{b64url(claims(LOCAL + DISCOVERY))}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def _public_pem(env: CorpusEnv) -> bytes:
    return env.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _replayed(env: CorpusEnv) -> Attempt:
    token = env.token()
    assert env.client.get(DISCOVERY, headers=bearer(token)).status_code == 200
    return Attempt("jti already used", bearer(token))


def _replayed_jti_in_a_new_token(env: CorpusEnv) -> Attempt:
    jti = str(uuid.uuid4())
    first = env.client.get(DISCOVERY, headers=bearer(env.token(jti=jti)))
    assert first.status_code == 200
    return Attempt(
        "jti already used", bearer(env.token(PATIENT_VIEW, jti=jti)), PATIENT_VIEW, "POST"
    )


def _tampered(env: CorpusEnv) -> Attempt:
    header, _, signature = env.token().split(".")
    payload = b64url(claims(LOCAL + DISCOVERY, sub="someone-else"))
    return Attempt("InvalidSignatureError", bearer(f"{header}.{payload}.{signature}"))


def _oversized(env: CorpusEnv) -> Attempt:
    token = env.token(padding="x" * MAX_TOKEN_CHARS)  # correctly signed, just too large
    assert len(token) > MAX_TOKEN_CHARS
    return Attempt("longer than", bearer(token))


def _other_key(kind: str = "P-384", kid: str | None = None) -> SigningKey:
    return generate_key(kind, kid)


CORPUS: dict[str, Callable[[CorpusEnv], Attempt]] = {
    # the algorithm
    "alg none": lambda e: Attempt("algorithm none not accepted", bearer(_unsigned(e, "none"))),
    "alg None (capitalised)": lambda e: Attempt("not accepted", bearer(_unsigned(e, "None"))),
    "HS256 signed with the public key (PEM) as secret": lambda e: Attempt(
        "algorithm HS256 not accepted", bearer(_hmac_signed(e, "HS256", _public_pem(e)))
    ),
    "HS256 signed with the public JWK as secret": lambda e: Attempt(
        "algorithm HS256 not accepted",
        bearer(_hmac_signed(e, "HS256", json.dumps(e.key.public_jwk()).encode())),
    ),
    "HS512 signed with the public key (PEM) as secret": lambda e: Attempt(
        "algorithm HS512 not accepted", bearer(_hmac_signed(e, "HS512", _public_pem(e)))
    ),
    "RSA algorithm naming the EC key's kid": lambda e: Attempt(
        "does not fit key",
        bearer(sign(_other_key("RSA", e.key.kid), "PS256", claims(LOCAL + DISCOVERY))),
    ),
    # time
    "expired": lambda e: Attempt(
        "ExpiredSignatureError",
        bearer(e.token(iat=int(time.time()) - 420, exp=int(time.time()) - 120)),
    ),
    "not yet valid (nbf)": lambda e: Attempt(
        "not yet valid (nbf)", bearer(e.token(nbf=int(time.time()) + 600))
    ),
    "issued in the future (iat)": lambda e: Attempt(
        "not yet valid (iat)",
        bearer(e.token(iat=int(time.time()) + 600, exp=int(time.time()) + 900)),
    ),
    "lifetime longer than allowed": lambda e: Attempt(
        "lifetime", bearer(e.token(exp=int(time.time()) + 2 * 86_400))
    ),
    # the audience
    "aud of another service": lambda e: Attempt(
        "InvalidAudienceError", bearer(e.token(ENCOUNTER_START)), PATIENT_VIEW, "POST"
    ),
    "aud of discovery on a service call": lambda e: Attempt(
        "InvalidAudienceError", bearer(e.token(DISCOVERY)), PATIENT_VIEW, "POST"
    ),
    "aud of a service on discovery": lambda e: Attempt(
        "InvalidAudienceError", bearer(e.token(PATIENT_VIEW))
    ),
    "aud of the service on its feedback": lambda e: Attempt(
        "InvalidAudienceError", bearer(e.token(PATIENT_VIEW)), FEEDBACK, "POST"
    ),
    "aud of another host": lambda e: Attempt(
        "InvalidAudienceError",
        bearer(sign(e.key, "ES384", claims("https://other.example.org/cds-services"))),
    ),
    "aud array without the URL": lambda e: Attempt(
        "InvalidAudienceError",
        bearer(sign(e.key, "ES384", claims([LOCAL + PATIENT_VIEW, "https://other.example"]))),
    ),
    # required claims
    "missing jti": lambda e: Attempt('missing the "jti"', bearer(e.token(jti=DROP))),
    "missing exp": lambda e: Attempt('missing the "exp"', bearer(e.token(exp=DROP))),
    "missing iat": lambda e: Attempt('missing the "iat"', bearer(e.token(iat=DROP))),
    "missing aud": lambda e: Attempt(
        'missing the "aud"', bearer(sign(e.key, "ES384", claims(DROP)))
    ),
    "missing iss": lambda e: Attempt("issuer not trusted", bearer(e.token(iss=DROP))),
    "jti not a string": lambda e: Attempt("jti is not a string", bearer(e.token(jti=12345))),
    "jti too long": lambda e: Attempt("jti is not a string", bearer(e.token(jti="j" * 300))),
    # replay
    "replayed jti (same token)": _replayed,
    "replayed jti (new token, same issuer and jti)": _replayed_jti_in_a_new_token,
    # keys and issuers
    "unknown kid": lambda e: Attempt(
        "unknown kid", bearer(sign(_other_key(), "ES384", claims(LOCAL + DISCOVERY)))
    ),
    "missing kid": lambda e: Attempt(
        "kid missing", bearer(sign(e.key, "ES384", claims(LOCAL + DISCOVERY), kid=DROP))
    ),
    "jku not allowed (a loopback server)": lambda e: Attempt(
        "jku not allowed",
        bearer(sign(e.key, "ES384", claims(LOCAL + DISCOVERY), jku=e.canary.url("/jwks.json"))),
    ),
    "jku not allowed (an outside URL)": lambda e: Attempt(
        "jku not allowed",
        bearer(sign(e.key, "ES384", claims(LOCAL + DISCOVERY), jku="https://evil.example/jwks")),
    ),
    "trusted kid with an untrusted iss": lambda e: Attempt(
        "issuer not trusted", bearer(e.token(iss="https://evil.example"))
    ),
    "untrusted issuer with its own key": lambda e: Attempt(
        "issuer not trusted",
        bearer(sign(_other_key(), "ES384", claims(LOCAL + DISCOVERY, iss="https://evil.example"))),
    ),
    "forged signature (another key, trusted kid)": lambda e: Attempt(
        "InvalidSignatureError",
        bearer(sign(_other_key("P-384", e.key.kid), "ES384", claims(LOCAL + DISCOVERY))),
    ),
    "tampered claims": _tampered,
    "another issuer's key for a trusted issuer": lambda e: Attempt(
        "unknown kid", bearer(sign(e.tenant_key, "ES256", claims(LOCAL + DISCOVERY)))
    ),
    # tenants
    "tenant missing where the client names tenants": lambda e: Attempt(
        "tenant not allowed",
        bearer(sign(e.tenant_key, "ES256", claims(LOCAL + DISCOVERY, iss=TENANT_ISSUER))),
    ),
    "tenant not allowed": lambda e: Attempt(
        "tenant not allowed",
        bearer(
            sign(
                e.tenant_key,
                "ES256",
                claims(LOCAL + DISCOVERY, iss=TENANT_ISSUER, tenant="tenant-b"),
            )
        ),
    ),
    # header oddities
    "typ not JWT": lambda e: Attempt(
        "typ at+jwt", bearer(sign(e.key, "ES384", claims(LOCAL + DISCOVERY), typ="at+jwt"))
    ),
    "unknown critical header": lambda e: Attempt(
        "critical extension",
        bearer(sign(e.key, "ES384", claims(LOCAL + DISCOVERY), crit=["exp"])),
    ),
    # the token itself
    "oversized token": _oversized,
    "garbage token": lambda e: Attempt("not a JWT", bearer("not-a-jwt")),
    "garbage in three parts": lambda e: Attempt("not a JWT", bearer("aaaa.bbbb.cccc")),
    "header not JSON": lambda e: Attempt(
        "not a JWT", bearer(f"{b64url(b'{oops')}.{b64url(claims(LOCAL))}.c2ln")
    ),
    # the header form
    "no Authorization header": lambda e: Attempt("no Authorization header"),
    "scheme Token": lambda e: Attempt(
        "not a Bearer token", {"Authorization": f"Token {e.token()}"}
    ),
    "scheme Basic": lambda e: Attempt(
        "not a Bearer token", {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}
    ),
    "Bearer without a token": lambda e: Attempt("not a Bearer token", {"Authorization": "Bearer"}),
    "Bearer with two tokens": lambda e: Attempt(
        "not a Bearer token", {"Authorization": f"Bearer {e.token()} {e.token()}"}
    ),
    "bare token without scheme": lambda e: Attempt(
        "not a Bearer token", {"Authorization": e.token()}
    ),
    "token in the query string": lambda e: Attempt(
        "no Authorization header", query={"access_token": e.token()}
    ),
    "token in another header": lambda e: Attempt(
        "no Authorization header", {"X-Authorization": f"Bearer {e.token()}"}
    ),
}


def _two_headers(env: CorpusEnv, client: FlaskClient) -> Any:
    token = env.token()
    return client.get(DISCOVERY, headers=[("Authorization", f"Bearer {token}")] * 2)


@pytest.mark.parametrize("name", list(CORPUS))
def test_attack_is_rejected_without_an_outbound_request(corpus_env, caplog, name):
    caplog.set_level(logging.WARNING, logger="cds_service.web.security")
    attempt = CORPUS[name](corpus_env)
    caplog.clear()
    response = attempt.send(corpus_env.client)
    assert_unauthorized(response)
    assert corpus_env.jwks.requests() == 1, "the corpus must not make the service fetch keys"
    assert corpus_env.canary.requests() == 0, "a jku that is not allowed is never contacted"
    rejections = [r.getMessage() for r in caplog.records if "JWT rejected" in r.getMessage()]
    assert len(rejections) == 1 and attempt.reason in rejections[0], rejections
    for value in [*attempt.headers.values(), *attempt.query.values()]:
        token = value.split()[-1] if value else value
        if len(token) > 40:
            assert token not in caplog.text, "the token must never be logged"


def test_two_authorization_headers_are_rejected(corpus_env, caplog):
    response = _two_headers(corpus_env, corpus_env.client)
    assert_unauthorized(response)
    assert "not a Bearer token" in caplog.text
    assert corpus_env.jwks.requests() == 1


# ------------------------------------------------------------------------ what gets through


@pytest.fixture(scope="module")
def every_alg_app(tmp_path_factory, signing_keys) -> Flask:
    rsa_jwk = signing_keys["RSA"].public_jwk()  # no `alg`: RS* and PS* all fit an RSA key
    clients = [
        {
            "issuer": ISSUER,
            "jwks": {"keys": [rsa_jwk, *(signing_keys[c].public_jwk() for c in _EC)]},
            "fhir_servers": [FHIR_SERVER],
        }
    ]
    return make_auth_app(tmp_path_factory.mktemp("algs"), clients)


_EC = ("P-256", "P-384", "P-521")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_accepted_algorithm_on_every_route(every_alg_app, signing_keys, alg):
    client = every_alg_app.test_client()
    key = signing_keys[KEY_KIND[alg]]
    discovery = client.get(DISCOVERY, headers=bearer(sign(key, alg, claims(LOCAL + DISCOVERY))))
    assert discovery.status_code == 200, discovery.get_data(as_text=True)
    token = sign(key, alg, claims(LOCAL + PATIENT_VIEW))
    service = client.post(PATIENT_VIEW, headers=bearer(token), json=service_body())
    assert service.status_code == 200, service.get_data(as_text=True)
    feedback = client.post(
        FEEDBACK, headers=bearer(sign(key, alg, claims(LOCAL + FEEDBACK))), json={"feedback": []}
    )
    assert feedback.status_code == 400, "past authentication, the empty feedback is refused"


def test_aud_array_containing_the_url_and_lowercase_scheme(every_alg_app, signing_keys):
    token = sign(signing_keys["P-384"], "ES384", claims(["https://x.example", LOCAL + DISCOVERY]))
    response = every_alg_app.test_client().get(
        DISCOVERY, headers={"Authorization": f"bearer {token}"}
    )
    assert response.status_code == 200


def test_epic_shaped_token_rs384_with_sub_and_nbf(every_alg_app, signing_keys):
    """Epic: RS384, an RSA key without `alg`, `sub` (client id) and `nbf` 5 minutes before."""
    now = int(time.time())
    payload = claims(LOCAL + DISCOVERY, sub="epic-client-id", nbf=now - 300, iat=now)
    token = sign(signing_keys["RSA"], "RS384", payload)
    assert every_alg_app.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 200


def test_clock_skew_within_the_leeway_is_accepted(every_alg_app, signing_keys):
    now = int(time.time())
    token = sign(signing_keys["P-256"], "ES256", claims(LOCAL + DISCOVERY, iat=now + 10))
    assert every_alg_app.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 200


# ------------------------------------------------------------------------ the verified caller

CALLER_PATH = "/cds-services/test-caller/whoami"


def _with_caller_route(app: Flask) -> Flask:
    """A route added under /cds-services, as a later feature would: protected by its path."""
    bp = Blueprint("test_caller", __name__)

    @bp.get(CALLER_PATH)
    def whoami() -> Any:
        caller = current_caller()
        return jsonify(None if caller is None else {**caller.__dict__})

    app.register_blueprint(bp)
    return app


def test_the_verified_caller_is_set_for_the_request(tmp_path, signing_keys):
    key = signing_keys["P-256"]
    clients = [
        {
            "issuer": TENANT_ISSUER,
            "jwks": key.jwks(),
            "tenants": ["tenant-a", "tenant-b"],
            "fhir_servers": [FHIR_SERVER, "https://other-fhir.example.org/fhir"],
        }
    ]
    app = _with_caller_route(make_auth_app(tmp_path, clients))
    client = app.test_client()
    assert_unauthorized(client.get(CALLER_PATH))
    payload = claims(LOCAL + CALLER_PATH, iss=TENANT_ISSUER, tenant="tenant-b", sub="client-7")
    token = sign(key, "ES256", payload)
    response = client.get(CALLER_PATH, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {
        "issuer": TENANT_ISSUER,
        "jti": payload["jti"],
        "tenant": "tenant-b",
        "subject": "client-7",
        "kid": key.kid,
        "fhir_servers": [FHIR_SERVER, "https://other-fhir.example.org/fhir"],
    }
    assert token not in response.get_data(as_text=True)


def test_development_mode_needs_no_token_and_has_no_caller(tmp_path):
    from cds_service import Settings, create_app

    settings = Settings(instance_path=migrated_instance(tmp_path), allow_unauthenticated=True)
    client = _with_caller_route(create_app(settings)).test_client()
    response = client.get(CALLER_PATH)
    assert response.status_code == 200 and response.get_json() is None


def test_open_routes_need_no_token(corpus_env):
    for path in ("/healthz", "/readyz", "/openapi.yaml"):
        assert corpus_env.client.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/cds-services/"),
        ("POST", "/cds-services/no-such-service"),  # 401, not 404: nothing is told unasked
        ("GET", "/cds-services/a/b/c"),
        ("PUT", DISCOVERY),
        ("HEAD", DISCOVERY),
    ],
)
def test_every_path_under_cds_services_needs_a_token(corpus_env, method, path):
    response = corpus_env.client.open(path, method=method)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# ------------------------------------------------------------------------ public base URL


def test_audience_is_the_public_base_url_behind_a_proxy(auth_app, signing_keys):
    key = signing_keys["P-384"]
    app = auth_app(
        [{"issuer": ISSUER, "jwks": key.jwks()}],
        public_base_url="https://cds.example.org/base/",
    )
    client = app.test_client()
    public = sign(key, "ES384", claims("https://cds.example.org/base" + DISCOVERY))
    assert client.get(DISCOVERY, headers=bearer(public)).status_code == 200
    local = sign(key, "ES384", claims(LOCAL + DISCOVERY))
    assert_unauthorized(client.get(DISCOVERY, headers=bearer(local)))


# ------------------------------------------------------------------------ keys from URLs


def test_keys_from_an_allowed_jku_are_fetched_once_and_cached(auth_app, jwks_server):
    key = generate_key("P-384")
    url = jwks_server.publish("/keys", key.jwks())
    app = auth_app([{"issuer": ISSUER, "allowed_jku": [url]}])
    client = app.test_client()
    for _ in range(3):
        token = sign(key, "ES384", claims(LOCAL + DISCOVERY), jku=url)
        assert client.get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert jwks_server.requests() == 1


def test_an_inline_key_is_used_without_fetching_its_allowed_jku(auth_app, jwks_server):
    key = generate_key("P-384")
    url = jwks_server.publish("/keys", key.jwks())
    app = auth_app([{"issuer": ISSUER, "jwks": key.jwks(), "allowed_jku": [url]}])
    token = sign(key, "ES384", claims(LOCAL + DISCOVERY), jku=url)
    assert app.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert jwks_server.requests() == 0


def test_a_slow_key_server_is_cut_off_by_the_timeout(auth_app, jwks_server, caplog):
    key = generate_key("P-384")
    url = jwks_server.publish("/keys", key.jwks())
    jwks_server.delay_s = 1.5
    app = auth_app([{"issuer": ISSUER, "jwks_url": url}], jwks_timeout_seconds=0.3)
    started = time.monotonic()
    response = app.test_client().get(
        DISCOVERY, headers=bearer(sign(key, "ES384", claims(LOCAL + DISCOVERY)))
    )
    assert_unauthorized(response)
    assert time.monotonic() - started < 2.0
    assert "JWK Set unavailable" in caplog.text


def test_key_rotation_is_picked_up_after_the_refresh_interval(auth_app, jwks_server):
    old, new = generate_key("P-384"), generate_key("P-384")
    url = jwks_server.publish("/keys", old.jwks())
    app = auth_app([{"issuer": ISSUER, "jwks_url": url}], jwks_refresh_seconds=1)
    client = app.test_client()
    assert (
        client.get(
            DISCOVERY, headers=bearer(sign(old, "ES384", claims(LOCAL + DISCOVERY)))
        ).status_code
        == 200
    )
    jwks_server.publish("/keys", {"keys": [old.public_jwk(), new.public_jwk()]})
    for _ in range(5):  # unknown kid within the interval: no refresh, however often it comes
        token = sign(new, "ES384", claims(LOCAL + DISCOVERY))
        assert_unauthorized(client.get(DISCOVERY, headers=bearer(token)))
    assert jwks_server.requests() == 1
    time.sleep(1.1)
    token = sign(new, "ES384", claims(LOCAL + DISCOVERY))
    assert client.get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert jwks_server.requests() == 2


def test_the_key_set_is_fetched_again_after_its_lifetime(auth_app, jwks_server):
    key = generate_key("P-384")
    url = jwks_server.publish("/keys", key.jwks())
    app = auth_app([{"issuer": ISSUER, "jwks_url": url}], jwks_cache_seconds=1)
    client = app.test_client()
    for _ in range(2):
        assert (
            client.get(
                DISCOVERY, headers=bearer(sign(key, "ES384", claims(LOCAL + DISCOVERY)))
            ).status_code
            == 200
        )
    assert jwks_server.requests() == 1
    time.sleep(1.1)
    assert (
        client.get(
            DISCOVERY, headers=bearer(sign(key, "ES384", claims(LOCAL + DISCOVERY)))
        ).status_code
        == 200
    )
    assert jwks_server.requests() == 2


# ------------------------------------------------------------------------ replay store down


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+psycopg://127.0.0.1:9/nowhere",  # nothing listens: the database is down
        "sqlite:///{instance}/never-migrated.sqlite3",  # reachable, but no replay table
    ],
)
def test_replay_store_unavailable_refuses_with_503_never_unchecked(
    tmp_path, signing_keys, caplog, database_url
):
    key = signing_keys["P-384"]
    app = make_auth_app(
        tmp_path,
        [{"issuer": ISSUER, "jwks": key.jwks()}],
        migrate=False,
        database_url=database_url.format(instance=tmp_path),
    )
    token = sign(key, "ES384", claims(LOCAL + DISCOVERY))
    response = app.test_client().get(DISCOVERY, headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["issue"][0]["code"] == "transient"
    assert "replay" in caplog.text
    assert token not in caplog.text


# ------------------------------------------------------------------------ fuzzed tokens

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _plausible(now: int, kid: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [ISSUER, LOCAL + DISCOVERY, now, now - 400, now + 400, kid, "ES384", "none", "JWT"]
    )


def _members(names: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=6), values, max_size=8)


@pytest.fixture(scope="module")
def inline_app(tmp_path_factory, signing_keys) -> Flask:
    """Inline keys only: whatever a token says, nothing can be fetched."""
    clients = [{"issuer": ISSUER, "jwks": signing_keys["P-384"].jwks()}]
    return make_auth_app(tmp_path_factory.mktemp("fuzzed-tokens"), clients)


@given(data=st.data(), signed=st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_fuzzed_token_never_causes_a_server_error(inline_app, signing_keys, data, signed):
    """Random headers and claims, near-valid values mixed in, signed with the trusted key or
    not: the answer is 200 (a valid token, by chance) or 401, never a 5xx."""
    key = signing_keys["P-384"]
    values = _JSON | _plausible(int(time.time()), key.kid)
    header = data.draw(_members(["alg", "kid", "typ", "jku", "crit"], values))
    payload = data.draw(_members(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant"], values))
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if signed and header.get("alg") == "ES384":
        signature = jwt.get_algorithm_by_name("ES384").sign(signing_input.encode(), key.private)
    else:
        signature = data.draw(st.binary(max_size=120))
    token = f"{signing_input}.{b64url(signature)}"
    response = inline_app.test_client().get(DISCOVERY, headers=bearer(token))
    assert response.status_code in (200, 401), response.get_data(as_text=True)
