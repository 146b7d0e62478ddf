"""CDS clients for the tests: real keys, real signed JWTs, trusted-clients files, JWKS servers.

A pytest plugin (loaded by conftest.py):
- `signing_keys`: one generated key per kind (RSA 2048, EC P-256, P-384, P-521), per session;
- `jwks_server`: a real HTTP server on loopback publishing JWK Sets, counting every request;
- `auth_app`: builds an application that requires JWTs, from a list of trusted-client entries.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service import Settings, create_app
from cds_service.storage.database import upgrade

ISSUER = "https://ehr.example.org"
#: the base URL of the Flask test client
LOCAL = "http://localhost"
DISCOVERY = "/cds-services"
PATIENT_VIEW = "/cds-services/back-spasm-patient-view"
ENCOUNTER_START = "/cds-services/back-spasm-encounter-start"
FEEDBACK = "/cds-services/back-spasm-patient-view/feedback"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
KEY_KIND = {alg: "RSA" for alg in ALGORITHMS if alg[0] in "RP"} | {
    "ES256": "P-256",
    "ES384": "P-384",
    "ES512": "P-521",
}
_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
#: a claim value that removes the claim
DROP = object()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Any

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
        return {**json.loads(algorithm.to_jwk(public)), "kid": self.kid, "use": "sig", **extra}

    def jwks(self, **extra: Any) -> dict[str, Any]:
        return {"keys": [self.public_jwk(**extra)]}


def generate_key(kind: str, kid: str | None = None) -> SigningKey:
    kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
    if kind == "RSA":
        return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return SigningKey(kid, ec.generate_private_key(_CURVES[kind]))


def claims(aud: Any, *, iss: str = ISSUER, lifetime: int = 300, **changes: Any) -> dict[str, Any]:
    """The claims a CDS client sends (CDS Hooks 2.0), with `changes` applied (DROP removes)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not DROP}


def sign(key: SigningKey, alg: str, payload: dict[str, Any], **header: Any) -> str:
    headers = {"kid": key.kid, **header}
    headers = {k: v for k, v in headers.items() if v is not DROP}
    return jwt.encode(payload, key.private, algorithm=alg, headers=headers)


def b64url(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_trusted_clients(path: Path, clients: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"clients": clients}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """One trusted key per kind; tests that need an attacker's key generate their own."""
    return {kind: generate_key(kind) for kind in ("RSA", "P-256", "P-384", "P-521")}


class JwksServer:
    """A JWKS publisher on loopback; `requests()` counts what it was asked, whatever the path."""

    def __init__(self) -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0)
        self.documents: dict[str, Any] = {}
        self.delay_s = 0.0
        self.server.expect_request(re.compile(".*")).respond_with_handler(self._answer)

    def _answer(self, request: Request) -> Response:
        if self.delay_s:
            time.sleep(self.delay_s)
        document = self.documents.get(request.path)
        if document is None:
            return Response("not found", status=404)
        return Response(json.dumps(document), content_type="application/json")

    def publish(self, path: str, jwks: dict[str, Any]) -> str:
        self.documents[path] = jwks
        return self.url(path)

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def requests(self) -> int:
        return len(self.server.log)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    server.server.start()
    try:
        yield server
    finally:
        server.delay_s = 0
        server.server.stop()


def make_auth_app(
    instance: Path, clients: list[dict[str, Any]], *, migrate: bool = True, **settings: Any
) -> Flask:
    """An application that requires JWTs from `clients`, on a fresh SQLite database."""
    instance.mkdir(parents=True, exist_ok=True)
    trusted = write_trusted_clients(instance / "trusted-clients.yaml", clients)
    config = Settings(instance_path=instance, trusted_clients=trusted, **settings)
    if migrate:
        upgrade(config.resolved_database_url())
    return create_app(config)


@pytest.fixture
def auth_app(tmp_path: Path) -> Callable[..., Flask]:
    counter = iter(range(1000))

    def _make(clients: list[dict[str, Any]], **settings: Any) -> Flask:
        return make_auth_app(tmp_path / f"instance-{next(counter)}", clients, **settings)

    return _make
