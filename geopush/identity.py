"""Customer proofs: who says this device belongs to that CRM customer (SPEC section 7).

The app key ships inside every app, so a `customer_id` sent at registration proves nothing.
The retailer's login backend, after the user signs in, issues a short-lived JSON Web Token
whose `sub` is the customer id; geopush links a device only when that token verifies: HS256
with `[auth] customer_link_secret`, or RS256/ES256 with the PEM public key in
`[auth] customer_link_public_key_file`. The algorithm a token may use follows from the key
that verifies it, never from the token alone (no `none`, no HS256 signed with a public key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from geopush.errors import Forbidden

# SPEC section 7: at most 60 s of clock skew between the retailer's backend and geopush.
CLOCK_SKEW_S = 60
# SPEC section 10: `[auth] max_proof_lifetime_s`.
DEFAULT_MAX_LIFETIME_S = 900
KEY_NAMES = "[auth] customer_link_secret or [auth] customer_link_public_key_file"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CustomerProofError(Forbidden):
    """The proof is missing, malformed, expired, for someone else, or cannot be checked
    (403 `customer_unverified`)."""

    code = "customer_unverified"


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


@dataclass(frozen=True)
class VerifiedProof:
    """What a valid proof says, for the single-use and lifetime checks against the store."""

    customer_id: str
    expires_at: datetime
    # `jti` when the backend sets one (such a proof links once), else the token's SHA-256,
    # so a proof without `iat` can still be dated from when geopush first saw it.
    use_key: str
    has_jti: bool


def verify_customer_proof(proof: str | None, customer_id: str, keys: CustomerLinkKeys,
                          *, max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
                          now: datetime | None = None) -> VerifiedProof:
    """What a valid token for `customer_id` says; CustomerProofError otherwise.

    A proof is a sign-in moment, not a credential: whatever its `exp` says (2999 is
    possible), it is good for at most `max_lifetime_s` after its `iat` (SPEC section 10), so
    a leaked proof cannot link devices for years. The message says what was wrong for the
    app developer; it never repeats the token.
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
    except jwt.ImmatureSignatureError:
        raise CustomerProofError("customer_proof was issued in the future") from None
    except jwt.InvalidSignatureError:
        raise CustomerProofError("customer_proof signature does not verify") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise CustomerProofError("customer_proof is not a valid token") from None
    if claims["sub"] != customer_id:
        raise CustomerProofError("customer_proof was issued for another customer")
    now = now or datetime.now(UTC)
    iat = claims.get("iat")
    if iat is not None:
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise CustomerProofError("customer_proof iat must be a number of seconds")
        if iat > now.timestamp() + CLOCK_SKEW_S:
            raise CustomerProofError("customer_proof was issued in the future")
        if now.timestamp() > iat + max_lifetime_s + CLOCK_SKEW_S:
            raise CustomerProofError(
                f"customer_proof is older than {max_lifetime_s:g} s: ask the login backend"
                " for a fresh one")
    jti = claims.get("jti")
    if jti is not None and (not isinstance(jti, str) or not 0 < len(jti) <= 200):
        raise CustomerProofError("customer_proof jti must be a string of 1 to 200 characters")
    expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
    if iat is not None:
        expires = min(expires, datetime.fromtimestamp(iat + max_lifetime_s, UTC))
    key = f"jti:{jti}" if jti else "sha256:" + hashlib.sha256(proof.encode()).hexdigest()
    return VerifiedProof(customer_id, expires, key, jti is not None)


def issue_customer_proof(customer_id: str, key: Any, *, algorithm: str = "HS256",
                         ttl_s: float = 300, now: datetime | None = None,
                         jti: str | None = None) -> str:
    """A proof as the retailer's login backend issues it after the customer signs in.

    `key` is the shared secret for HS256, or the PEM private key for RS256/ES256.
    """
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {"sub": customer_id, "iat": int(issued.timestamp()),
                              "exp": int((issued + timedelta(seconds=ttl_s)).timestamp())}
    if jti is not None:
        claims["jti"] = jti
    return jwt.encode(claims, key, algorithm=algorithm)
