"""The trusted-clients file, the README's worked example, and the CDS Hooks Sandbox's real key.

The sandbox publishes its signing key pair (cds-hooks/sandbox: `keys/ecprivkey.pem`,
`build/.well-known/jwks.json`); both are kept in tests/fixtures. Tokens are signed here with the
sandbox's real private key, in the shape the sandbox sends (CDS Hooks reference §2.3).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt import PyJWKSet
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from support.jwt_clients import DISCOVERY, FEEDBACK, LOCAL, PATIENT_VIEW, bearer, generate_key

from cds_service import Settings, create_app
from cds_service.auth.clients import TrustedClientsError, load_trusted_clients
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


def readme_example() -> str:
    """The YAML block of the README's "Trusted clients" section."""
    readme = (PROJECT_ROOT / "README.md").read_text("utf-8")
    section = readme.split("### Trusted clients", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)[0]


def sandbox_private_key() -> Any:
    return load_pem_private_key((FIXTURES / "cds-hooks-sandbox-ecprivkey.pem").read_bytes(), None)


def sandbox_token(aud: str) -> str:
    """A token as the sandbox signs it: ES384, kid and jku; iss, aud, exp = iat + 300, iat, jti."""
    now = int(time.time())
    payload = {"iss": SANDBOX_ISSUER, "aud": aud, "exp": now + 300, "iat": now}
    payload["jti"] = str(uuid.uuid4())
    header = {"kid": SANDBOX_KID, "jku": SANDBOX_JKU, "typ": "JWT"}
    return jwt.encode(payload, sandbox_private_key(), algorithm="ES384", headers=header)


# ------------------------------------------------------------------------ the sandbox


def test_the_readme_example_loads(tmp_path):
    path = tmp_path / "trusted-clients.yaml"
    path.write_text(readme_example())
    clients = load_trusted_clients(path)
    sandbox = clients[SANDBOX_ISSUER]
    assert set(sandbox.keys) == {SANDBOX_KID}
    assert sandbox.allowed_jku == (SANDBOX_JKU,)
    assert sandbox.tenants == () and sandbox.jwks_url is None


def test_the_readme_key_is_the_sandbox_published_jwks():
    published = json.loads((FIXTURES / "cds-hooks-sandbox-jwks.json").read_text())
    example = yaml.safe_load(readme_example())["clients"][0]["jwks"]
    assert example == published
    key = PyJWKSet.from_dict(published)[SANDBOX_KID]
    assert key.algorithm_name == "ES384" and key.key.curve.name == "secp384r1"


def test_the_published_private_key_matches_the_published_public_key():
    published = PyJWKSet.from_dict(
        json.loads((FIXTURES / "cds-hooks-sandbox-jwks.json").read_text())
    )
    assert sandbox_private_key().public_key().public_numbers() == (
        published[SANDBOX_KID].key.public_numbers()
    )


@pytest.fixture
def readme_app(tmp_path):
    path = tmp_path / "trusted-clients.yaml"
    path.write_text(readme_example())
    settings = Settings(instance_path=tmp_path, trusted_clients=path)
    upgrade(settings.resolved_database_url())
    return create_app(settings)


def test_sandbox_tokens_signed_with_its_real_key_are_accepted_on_every_route(readme_app):
    """The key is inline: nothing is fetched (test_auth proves that with a counting server)."""
    client = readme_app.test_client()
    assert (
        client.get(DISCOVERY, headers=bearer(sandbox_token(LOCAL + DISCOVERY))).status_code == 200
    )
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://launch.smarthealthit.org/v/r4/fhir",
        "context": {"patientId": "p1", "userId": "Practitioner/COREPRACTITIONER1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "conditions": None,
            "labs": None,
            "findings": None,
        },
    }
    token = sandbox_token(LOCAL + PATIENT_VIEW)
    service = client.post(PATIENT_VIEW, headers=bearer(token), json=body)
    assert service.status_code == 200, service.get_data(as_text=True)
    feedback = client.post(
        FEEDBACK, headers=bearer(sandbox_token(LOCAL + FEEDBACK)), json={"feedback": []}
    )
    assert feedback.status_code == 400, "past authentication, the empty feedback is refused"


def test_a_sandbox_shaped_token_with_another_key_is_refused(readme_app):
    impostor = generate_key("P-384", SANDBOX_KID)
    now = int(time.time())
    payload = {
        "iss": SANDBOX_ISSUER,
        "aud": LOCAL + DISCOVERY,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(payload, impostor.private, "ES384", {"kid": SANDBOX_KID, "jku": SANDBOX_JKU})
    assert readme_app.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 401


# ------------------------------------------------------------------------ the loader


def write(tmp_path: Path, document: Any, name: str = "clients.yaml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def test_json_is_accepted_too(tmp_path):
    key = generate_key("RSA")
    document = {
        "clients": [
            {
                "issuer": "https://ehr.example",
                "jwks": key.jwks(),
                "fhir_servers": ["https://fhir.example/r4"],
            }
        ]
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(document))
    client = load_trusted_clients(path)["https://ehr.example"]
    assert set(client.keys) == {key.kid} and client.fhir_servers == ("https://fhir.example/r4",)


def _ec(**extra: Any) -> dict[str, Any]:
    return generate_key("P-384", "k1").public_jwk(**extra)


def _entry(**members: Any) -> dict[str, Any]:
    return {"clients": [{"issuer": "https://ehr.example", **members}]}


def _short_rsa() -> dict[str, Any]:
    public = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    return _entry(jwks={"keys": [{**json.loads(RSAAlgorithm.to_jwk(public)), "kid": "r"}]})


def _secp256k1() -> dict[str, Any]:
    public = ec.generate_private_key(ec.SECP256K1()).public_key()
    return _entry(jwks={"keys": [{**json.loads(ECAlgorithm.to_jwk(public)), "kid": "s"}]})


#: name -> (the file's content, made when the test runs; what the one-line reason must say)
BAD_FILES: dict[str, tuple[Callable[[], Any], str]] = {
    "no clients": (lambda: {"clients": []}, "clients"),
    "not a mapping": (lambda: "- just\n- a list\n", "(top)"),
    "unknown member": (
        lambda: _entry(jwks={"keys": [_ec()]}, secret="x"),
        "Additional properties",
    ),
    "no key source": (lambda: _entry(tenants=["t"]), "no key source"),
    "empty allowed_jku only": (lambda: _entry(allowed_jku=[]), "no key source"),
    "private key": (
        lambda: _entry(jwks={"keys": [{**_ec(), "d": "c2VjcmV0"}]}),
        "private or secret material (d)",
    ),
    "symmetric key": (
        lambda: _entry(jwks={"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}),
        "private or secret material (k)",
    ),
    "HS256 on a key": (
        lambda: _entry(jwks={"keys": [_ec(alg="HS256")]}),
        "algorithm HS256 not accepted",
    ),
    "alg that does not fit the key": (
        lambda: _entry(jwks={"keys": [_ec(alg="ES256")]}),
        "does not fit the key",
    ),
    "short RSA key": (_short_rsa, "RSA key of 1024 bits"),
    "secp256k1 curve": (_secp256k1, "cannot verify any accepted algorithm"),
    "use enc": (lambda: _entry(jwks={"keys": [_ec(use="enc")]}), "cannot verify"),
    "kid twice": (
        lambda: _entry(jwks={"keys": [_ec(), generate_key("P-256", "k1").public_jwk()]}),
        "kid k1 appears twice",
    ),
    "issuer twice": (
        lambda: {"clients": [_entry(jwks={"keys": [_ec()]})["clients"][0]] * 2},
        "issuer listed twice",
    ),
    "jwks_url over http": (lambda: _entry(jwks_url="http://keys.example/jwks"), "is not https"),
    "allowed_jku over http": (
        lambda: _entry(allowed_jku=["http://keys.example/j"]),
        "is not https",
    ),
    "fhir server over http": (
        lambda: _entry(jwks={"keys": [_ec()]}, fhir_servers=["http://fhir.example/r4"]),
        "is not https",
    ),
    "not a URL": (lambda: _entry(jwks_url="keys.example/jwks"), "does not match"),
    "empty tenants": (lambda: _entry(jwks={"keys": [_ec()]}, tenants=[]), "tenants"),
    "bad YAML": (lambda: "clients: [\n  - {issuer: x\n", "not valid YAML or JSON"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_is_refused_with_one_line(tmp_path, name):
    make, expected = BAD_FILES[name]
    with pytest.raises(TrustedClientsError) as caught:
        load_trusted_clients(write(tmp_path, make()))
    message = str(caught.value)
    assert "\n" not in message
    assert expected in message, message
    assert str(tmp_path) in message


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(TrustedClientsError, match="cannot read"):
        load_trusted_clients(tmp_path / "absent.yaml")


def test_loopback_http_is_allowed_for_tests(tmp_path):
    path = write(
        tmp_path,
        _entry(
            jwks_url="http://127.0.0.1:8000/jwks",
            allowed_jku=["http://localhost:9/jwks", "http://[::1]:9/jwks"],
        ),
    )
    assert (
        load_trusted_clients(path)["https://ehr.example"].jwks_url == "http://127.0.0.1:8000/jwks"
    )


def test_the_app_will_not_build_without_trusted_clients_outside_development_mode(tmp_path):
    with pytest.raises(TrustedClientsError, match="CDS_TRUSTED_CLIENTS"):
        create_app(Settings(instance_path=tmp_path))
