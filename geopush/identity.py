"""Customer proofs: who says this device belongs to that CRM customer (SPEC section 7).

The app key ships inside every app, so a `customer_id` sent at registration proves nothing.
The retailer's login backend, after the user signs in, issues a short-lived JSON Web Token
whose `sub` is the customer id; geopush links a device only when that token verifies: HS256
with `[auth] customer_link_secret`, or RS256/ES256 with the PEM public key in
`[auth] customer_link_public_key_file`. The algorithm a token may use follows from the key
that verifies it, never from the token alone (no `none`, no HS256 signed with a public key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# SPEC section 7: at most 60 s of clock skew between the retailer's backend and geopush.
CLOCK_SKEW_S = 60
KEY_NAMES = "[auth] customer_link_secret or [auth] customer_link_public_key_file"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CustomerProofError(Exception):
    """The proof is missing, malformed, expired, for someone else, or cannot be checked."""


def load_public_key(path: str) -> PublicKey:
    """The RSA or P-256 public key in a PEM file; ValueError saying what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"{path}: an RSA key needs at least 2048 bits")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError(f"{path}: expected an RSA or EC P-256 public key (RS256 or ES256)")


@dataclass(frozen=True)
class CustomerLinkKeys:
    """What verifies proofs in this process: a shared secret, a public key, or both."""

    secret: str = ""
    public_key: PublicKey | None = None

    @classmethod
    def from_config(cls, secret: str, public_key_file: str) -> CustomerLinkKeys:
        return cls(secret, load_public_key(public_key_file) if public_key_file else None)

    @property
    def configured(self) -> bool:
        return bool(self.secret) or self.public_key is not None

    def verifier_for(self, algorithm: str) -> tuple[Any, str] | None:
        if algorithm == "HS256" and self.secret:
            return self.secret, "HS256"
        if algorithm == "RS256" and isinstance(self.public_key, rsa.RSAPublicKey):
            return self.public_key, "RS256"
        if algorithm == "ES256" and isinstance(self.public_key, ec.EllipticCurvePublicKey):
            return self.public_key, "ES256"
        return None


def verify_customer_proof(proof: str | None, customer_id: str, keys: CustomerLinkKeys) -> None:
    """Return quietly when `proof` is a valid token for `customer_id`; else CustomerProofError.

    The message says what was wrong for the app developer; it never repeats the token.
    """
    if not keys.configured:
        raise CustomerProofError(
            f"customer linking is not configured: set {KEY_NAMES} to verify customer_proof")
    if not proof:
        raise CustomerProofError(
            "customer_proof is required to link a customer: a JWT from the retailer's login"
            " backend whose sub is the customer_id")
    try:
        algorithm = jwt.get_unverified_header(proof).get("alg")
    except jwt.PyJWTError:
        raise CustomerProofError("customer_proof is not a JSON Web Token") from None
    verifier = keys.verifier_for(algorithm) if isinstance(algorithm, str) else None
    if verifier is None:
        raise CustomerProofError(
            f"customer_proof algorithm {str(algorithm)[:20]!r} is not accepted here"
            " (HS256 with the link secret, RS256 or ES256 with the link public key)")
    key, alg = verifier
    options: Any = {"require": ["exp", "sub"]}  # jwt.types.Options
    try:
        claims = jwt.decode(proof, key, algorithms=[alg], options=options,
                            leeway=CLOCK_SKEW_S)
    except jwt.ExpiredSignatureError:
        raise CustomerProofError("customer_proof has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise CustomerProofError(f"customer_proof lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise CustomerProofError("customer_proof signature does not verify") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise CustomerProofError("customer_proof is not a valid token") from None
    if claims["sub"] != customer_id:
        raise CustomerProofError("customer_proof was issued for another customer")


def issue_customer_proof(customer_id: str, key: Any, *, algorithm: str = "HS256",
                         ttl_s: float = 300, now: datetime | None = None) -> str:
    """A proof as the retailer's login backend issues it after the customer signs in.

    `key` is the shared secret for HS256, or the PEM private key for RS256/ES256.
    """
    issued = now or datetime.now(UTC)
    claims = {"sub": customer_id, "iat": int(issued.timestamp()),
              "exp": int((issued + timedelta(seconds=ttl_s)).timestamp())}
    return jwt.encode(claims, key, algorithm=algorithm)
