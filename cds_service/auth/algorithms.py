"""The JWS algorithms the service accepts, and which of them a key may verify."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
#: EC curve (cryptography's name) -> the one algorithm that uses it
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: Asymmetric only: `none` and the HMAC (HS*) algorithms are never accepted.
ACCEPTED_ALGORITHMS = frozenset(RSA_ALGORITHMS) | frozenset(EC_ALGORITHMS.values())


def algorithms_for_key(key: PyJWK) -> tuple[str, ...]:
    """The algorithms a public signing key may verify: RS*/PS* for RSA, ES* by curve for EC.

    Anything else (a private or symmetric key, an unknown curve, a key whose `use` is not
    `sig`) verifies nothing.
    """
    if key.public_key_use not in (None, "sig"):
        return ()
    public = key.key
    if isinstance(public, RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(public, EllipticCurvePublicKey) and public.curve.name in EC_ALGORITHMS:
        return (EC_ALGORITHMS[public.curve.name],)
    return ()
