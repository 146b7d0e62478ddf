"""The trusted-clients file (`CDS_TRUSTED_CLIENTS`): the EHRs whose JWTs the service accepts.

YAML or JSON, validated against `trusted_clients.schema.yaml`, then checked for what a schema
cannot say: every client has a key source, issuers are unique, inline keys are public RSA or EC
signing keys (RSA of 2048 bits or more), and every URL is https (plain http only on a loopback
host, for tests and local development). Any problem is one line naming the entry at fault.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from .algorithms import ACCEPTED_ALGORITHMS, algorithms_for_key

SCHEMA_PATH = Path(__file__).with_name("trusted_clients.schema.yaml")
#: JWK members that only a private or symmetric key has.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MIN_RSA_BITS = 2048


class TrustedClientsError(Exception):
    """The trusted-clients file cannot be used; the message is one line."""


@dataclass(frozen=True)
class TrustedClient:
    """One EHR the service trusts."""

    issuer: str
    #: inline public keys, by `kid`
    keys: Mapping[str, PyJWK] = field(default_factory=dict)
    jwks_url: str | None = None
    allowed_jku: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()


def load_trusted_clients(path: Path) -> dict[str, TrustedClient]:
    """The trusted clients by issuer, or `TrustedClientsError` with the first problem."""
    document = _read(path)
    problem = _schema_problem(document)
    if problem:
        raise TrustedClientsError(f"{path}: {problem}")
    clients: dict[str, TrustedClient] = {}
    for index, entry in enumerate(document["clients"]):
        where = f"clients/{index} ({entry['issuer']})"
        try:
            client = _client(entry)
        except ValueError as exc:
            raise TrustedClientsError(f"{path}: {where}: {exc}") from None
        if client.issuer in clients:
            raise TrustedClientsError(f"{path}: {where}: issuer listed twice")
        clients[client.issuer] = client
    return clients


def _read(path: Path) -> Any:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustedClientsError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TrustedClientsError(f"{path}: not valid YAML or JSON{where}") from None


def _schema_problem(document: Any) -> str | None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
    return f"{where}: {errors[0].message}"


def _client(entry: Mapping[str, Any]) -> TrustedClient:
    allowed_jku = tuple(entry.get("allowed_jku", ()))
    jwks_url = entry.get("jwks_url")
    for url in (jwks_url, *allowed_jku, *entry.get("fhir_servers", ())):
        if url is not None:
            _check_url(url)
    keys = _inline_keys(entry["jwks"]["keys"]) if "jwks" in entry else {}
    if not (keys or jwks_url or allowed_jku):
        raise ValueError("no key source: give jwks, jwks_url or allowed_jku")
    return TrustedClient(
        issuer=entry["issuer"],
        keys=keys,
        jwks_url=jwks_url,
        allowed_jku=allowed_jku,
        tenants=tuple(entry.get("tenants", ())),
        fhir_servers=tuple(entry.get("fhir_servers", ())),
    )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise ValueError(f"{url} is not https (plain http is allowed on a loopback host only)")


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _inline_keys(jwks: list[Mapping[str, Any]]) -> dict[str, PyJWK]:
    keys: dict[str, PyJWK] = {}
    for jwk in jwks:
        kid = jwk["kid"]
        if kid in keys:
            raise ValueError(f"kid {kid} appears twice")
        keys[kid] = _public_key(jwk)
    return keys


def _public_key(jwk: Mapping[str, Any]) -> PyJWK:
    kid = jwk["kid"]
    private = [m for m in PRIVATE_MEMBERS if m in jwk]
    if private:
        raise ValueError(
            f"key {kid} holds private or secret material ({private[0]}): give the public key only"
        )
    if jwk["kty"] not in ("RSA", "EC"):
        raise ValueError(f"key {kid}: key type {jwk['kty']} not accepted (RSA or EC only)")
    if "alg" in jwk and jwk["alg"] not in ACCEPTED_ALGORITHMS:
        raise ValueError(f"key {kid}: algorithm {jwk['alg']} not accepted")
    try:
        key = PyJWK(dict(jwk))
    except PyJWTError as exc:
        raise ValueError(f"key {kid} is not a usable key: {exc}") from None
    return _checked(key, jwk)


def _checked(key: PyJWK, jwk: Mapping[str, Any]) -> PyJWK:
    kid = jwk["kid"]
    algorithms = algorithms_for_key(key)
    if not algorithms:
        raise ValueError(f"key {kid} cannot verify any accepted algorithm (curve or use)")
    if "alg" in jwk and jwk["alg"] not in algorithms:
        raise ValueError(f"key {kid}: algorithm {jwk['alg']} does not fit the key")
    if isinstance(key.key, RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        raise ValueError(f"key {kid}: RSA key of {key.key.key_size} bits (at least 2048)")
    return key
