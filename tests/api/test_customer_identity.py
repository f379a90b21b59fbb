"""A device is linked to a CRM customer only with a customer_proof the retailer's backend
signed (SPEC section 7): the app key alone cannot claim someone else's identity."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from geopush.config import ConfigError, load_config
from geopush.identity import (
    CustomerLinkKeys,
    CustomerProofError,
    issue_customer_proof,
    verify_customer_proof,
)
from tests.api_client import CUSTOMER_LINK_SECRET, Api, emulator_messages, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import finished_delivery, open_shop, sections

OTHER_SECRET = "another-retailer-secret-" + "o" * 16
KEYS = CustomerLinkKeys(secret=CUSTOMER_LINK_SECRET)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none`, as an attacker would forge it."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def hs256_with(key: bytes, claims: dict[str, Any]) -> str:
    """HS256 signed with arbitrary bytes (PyJWT itself refuses a PEM key as a secret)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = f"{header}.{_b64(json.dumps(claims).encode())}"
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def claims(sub: str = "C-1", exp_in: float = 300) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time() + exp_in)}


BAD_PROOFS: dict[str, Callable[[], str | None]] = {
    "missing": lambda: None,
    "empty": lambda: "",
    "not a token": lambda: "hello",
    "expired": lambda: issue_customer_proof("C-1", CUSTOMER_LINK_SECRET, ttl_s=-61 - 5),
    "wrong signature": lambda: issue_customer_proof("C-1", OTHER_SECRET),
    "wrong sub": lambda: issue_customer_proof("C-2", CUSTOMER_LINK_SECRET),
    "alg none": lambda: unsigned(claims()),
    "no exp": lambda: jwt.encode({"sub": "C-1"}, CUSTOMER_LINK_SECRET, algorithm="HS256"),
    "no sub": lambda: jwt.encode({"exp": int(time.time()) + 60}, CUSTOMER_LINK_SECRET,
                                 algorithm="HS256"),
    "HS512": lambda: jwt.encode(claims(), CUSTOMER_LINK_SECRET * 2, algorithm="HS512"),
}


@pytest.mark.parametrize("case", list(BAD_PROOFS))
def test_bad_proof_is_refused(case: str) -> None:
    with pytest.raises(CustomerProofError):
        verify_customer_proof(BAD_PROOFS[case](), "C-1", KEYS)


def test_proof_within_clock_skew_is_accepted() -> None:
    fresh = verify_customer_proof(issue_customer_proof("C-1", CUSTOMER_LINK_SECRET), "C-1", KEYS)
    assert fresh.customer_id == "C-1" and not fresh.has_jti
    # Expired 30 s ago: within the 60 s of skew SPEC allows.
    late = issue_customer_proof("C-1", CUSTOMER_LINK_SECRET, ttl_s=-30)
    assert verify_customer_proof(late, "C-1", KEYS).customer_id == "C-1"
    # Expired 61 s ago: past it.
    with pytest.raises(CustomerProofError, match="expired"):
        verify_customer_proof(issue_customer_proof("C-1", CUSTOMER_LINK_SECRET, ttl_s=-62),
                              "C-1", KEYS)


def test_a_proof_lives_at_most_its_maximum_lifetime_whatever_its_exp() -> None:
    now = datetime.now(UTC)
    year_2999 = int(datetime(2999, 1, 1, tzinfo=UTC).timestamp())

    def proof(iat_ago: float) -> str:
        return jwt.encode({"sub": "C-1", "iat": int(now.timestamp() - iat_ago),
                           "exp": year_2999}, CUSTOMER_LINK_SECRET, algorithm="HS256")

    ok = verify_customer_proof(proof(60), "C-1", KEYS, max_lifetime_s=900, now=now)
    assert ok.expires_at <= now + timedelta(seconds=900), "capped by iat + lifetime"
    with pytest.raises(CustomerProofError, match="older than 900"):
        verify_customer_proof(proof(900 + 61), "C-1", KEYS, max_lifetime_s=900, now=now)
    with pytest.raises(CustomerProofError, match="older than 300"):
        verify_customer_proof(proof(400), "C-1", KEYS, max_lifetime_s=300, now=now)
    with pytest.raises(CustomerProofError, match="future"):
        verify_customer_proof(proof(-120), "C-1", KEYS, now=now)


async def test_a_proof_with_a_jti_links_one_device_only(api: Api, db) -> None:
    proof = issue_customer_proof("C-7", CUSTOMER_LINK_SECRET, jti="login-4711")
    first = (await register(api, "C-7", proof)).ok(201)
    for _ in range(4):
        reply = await register(api, "C-7", proof)
        assert reply.status == 403 and "already used" in reply.body["error"]["message"]
    other = (await register(api, None, None)).ok(201)
    reply = await api.call("PATCH", "/v1/devices/me", key=other["device_token"],
                           json={"customer_id": "C-7", "customer_proof": proof})
    assert reply.status == 403 and reply.body["error"]["code"] == "customer_unverified"
    linked = await db.fetch("SELECT device_id::text FROM devices WHERE customer_id = 'C-7'")
    assert [r["device_id"] for r in linked] == [first["device_id"]]
    # A fresh proof from the next sign-in links the second device.
    again = issue_customer_proof("C-7", CUSTOMER_LINK_SECRET, jti="login-4712")
    reply = await api.call("PATCH", "/v1/devices/me", key=other["device_token"],
                           json={"customer_id": "C-7", "customer_proof": again})
    assert reply.ok(200)["customer_id"] == "C-7"


async def test_a_proof_without_iat_ages_from_when_it_is_first_seen(db) -> None:
    from geopush.store.link_proofs import forget_spent_proofs, spend_proof

    token = jwt.encode({"sub": "C-1", "exp": 32503680000}, CUSTOMER_LINK_SECRET,
                       algorithm="HS256")
    proof = verify_customer_proof(token, "C-1", KEYS)
    t0 = datetime.now(UTC)
    await spend_proof(db, proof, max_lifetime_s=900, now=t0)
    await spend_proof(db, proof, max_lifetime_s=900, now=t0 + timedelta(seconds=600))
    with pytest.raises(CustomerProofError, match="first seen"):
        await spend_proof(db, proof, max_lifetime_s=900, now=t0 + timedelta(seconds=1000))
    # Forgotten once it could no longer link anyway, not before.
    assert await forget_spent_proofs(db, t0 + timedelta(seconds=900), 100) == 0
    assert await forget_spent_proofs(db, t0 + timedelta(seconds=1000), 100) == 1
    assert await db.fetchval("SELECT count(*) FROM link_proofs") == 0


def test_no_key_configured_refuses_naming_the_keys() -> None:
    proof = issue_customer_proof("C-1", CUSTOMER_LINK_SECRET)
    with pytest.raises(CustomerProofError, match=r"customer_link_secret.*customer_link_public_key"):
        verify_customer_proof(proof, "C-1", CustomerLinkKeys())


def _pem_pair(tmp_path: Path, kind: str) -> tuple[bytes, Path]:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
               else ec.generate_private_key(ec.SECP256R1()))
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(public_pem)
    return private_pem, path


async def register(api: Api, customer_id: str | None, proof: str | None, **extra: Any):
    body: dict[str, Any] = {"fcm_token": unique_token(), "platform": "ios", "locale": "en",
                            "timezone": "Europe/Paris"}
    if customer_id is not None:
        body["customer_id"] = customer_id
    if proof is not None:
        body["customer_proof"] = proof
    body.update(extra)
    return await api.as_role("app", "POST", "/v1/devices", json=body)


async def test_registration_with_a_bad_proof_is_403_and_creates_nothing(api: Api, db) -> None:
    for case, make in BAD_PROOFS.items():
        reply = await register(api, "C-1", make())
        assert reply.status == 403, (case, reply)
        assert reply.body["error"]["code"] == "customer_unverified", case
        assert reply.body["error"]["message"], case
    assert await db.fetchval("SELECT count(*) FROM devices") == 0
    reply = await register(api, "C-1", issue_customer_proof("C-1", CUSTOMER_LINK_SECRET))
    device_id = reply.ok(201)["device_id"]
    assert await db.fetchval("SELECT customer_id FROM devices WHERE device_id = $1::uuid",
                             device_id) == "C-1"


async def test_proof_without_customer_id_is_400(api: Api) -> None:
    reply = await register(api, None, issue_customer_proof("C-1", CUSTOMER_LINK_SECRET))
    assert reply.status == 400
    assert reply.body["error"]["details"][0]["field"] == "customer_proof"


@pytest.mark.parametrize(("kind", "algorithm"), [("rsa", "RS256"), ("ec", "ES256")])
async def test_public_key_proofs(start_server, tmp_path: Path, db, kind: str,
                                 algorithm: str) -> None:
    private_pem, public_path = _pem_pair(tmp_path, kind)
    server = await start_server(auth={"customer_link_secret": "",
                                      "customer_link_public_key_file": str(public_path)})
    async with Api(server.url, ADMIN_KEY) as api:
        good = issue_customer_proof("C-7", private_pem, algorithm=algorithm)
        assert (await register(api, "C-7", good)).status == 201
        # The same key pair, for someone else; another key pair; an HS256 token signed
        # with the public key as a secret (the classic algorithm confusion).
        other_private, _ = _pem_pair(tmp_path / "..", kind)
        for proof in (issue_customer_proof("C-8", private_pem, algorithm=algorithm),
                      issue_customer_proof("C-7", other_private, algorithm=algorithm),
                      hs256_with(public_path.read_bytes(), claims("C-7")),
                      issue_customer_proof("C-7", CUSTOMER_LINK_SECRET)):
            reply = await register(api, "C-7", proof)
            assert reply.status == 403, reply
            assert reply.body["error"]["code"] == "customer_unverified"
    assert await db.fetchval("SELECT array_agg(customer_id) FROM devices") == ["C-7"]


async def test_without_link_keys_linking_is_refused_naming_them(start_server, db) -> None:
    server = await start_server(auth={"customer_link_secret": ""})
    async with Api(server.url, ADMIN_KEY) as api:
        reply = await register(api, "C-1", issue_customer_proof("C-1", CUSTOMER_LINK_SECRET))
        assert reply.status == 403 and reply.body["error"]["code"] == "customer_unverified"
        assert "customer_link_secret" in reply.body["error"]["message"]
        assert "customer_link_public_key_file" in reply.body["error"]["message"]
        # Devices without a customer still register.
        (await register(api, None, None)).ok(201)
    assert await db.fetchval("SELECT count(*) FROM devices WHERE customer_id IS NOT NULL") == 0


async def test_patch_customer_id_needs_a_proof(api: Api) -> None:
    dev = await api.device(unique_token(), location=False, push=False)
    for proof in (None, issue_customer_proof("C-2", CUSTOMER_LINK_SECRET),
                  issue_customer_proof("C-1", OTHER_SECRET)):
        body: dict[str, Any] = {"customer_id": "C-1", "locale": "fr"}
        if proof:
            body["customer_proof"] = proof
        reply = await api.call("PATCH", "/v1/devices/me", key=dev.token, json=body)
        assert reply.status == 403 and reply.body["error"]["code"] == "customer_unverified"
    me = (await api.call("GET", "/v1/devices/me", key=dev.token)).ok(200)
    assert me["customer_id"] is None and me["locale"] == "en"  # nothing changed
    proof = issue_customer_proof("C-1", CUSTOMER_LINK_SECRET)
    me = (await api.call("PATCH", "/v1/devices/me", key=dev.token,
                         json={"customer_id": "C-1", "customer_proof": proof})).ok(200)
    assert me["customer_id"] == "C-1"
    # Unlinking needs no proof: it claims no one's identity.
    me = (await api.call("PATCH", "/v1/devices/me", key=dev.token,
                         json={"customer_id": None})).ok(200)
    assert me["customer_id"] is None


@pytest.mark.parametrize("missing", ["locale", "timezone"])
async def test_locale_and_timezone_are_required(api: Api, db, missing: str) -> None:
    body = {"fcm_token": unique_token(), "platform": "android", "locale": "fr-CA",
            "timezone": "America/Montreal"}
    del body[missing]
    reply = await api.as_role("app", "POST", "/v1/devices", json=body)
    assert reply.status == 400
    assert reply.body["error"]["details"] == [{"field": missing, "message": "is required"}]
    for bad in (None, "", 7):
        reply = await api.as_role("app", "POST", "/v1/devices", json={**body, missing: bad})
        assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == missing
    reply = await api.as_role("app", "POST", "/v1/devices",
                              json={**body, "locale": "fr-CA", "timezone": "Mars/Olympus"})
    assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == "timezone"
    assert await db.fetchval("SELECT count(*) FROM devices") == 0


async def test_impersonation_probe(start_server, emulator) -> None:
    """An app that sends someone else's customer_id gets no link, no first name, and does not
    use up the victim's daily cap."""
    server = await start_server(**sections(campaigns={"daily_cap": 1}))
    async with Api(server.url, ADMIN_KEY) as api:
        csv = "customer_id,first_name,language,created_at\nVICTIM-1,Ada,en,2024-01-01\n"
        (await api.as_role("marketer", "POST", "/v1/customers/import", data=csv,
                           headers={"Content-Type": "text/csv"})).ok(200)
        shop = await open_shop(api)
        for proof in (None, issue_customer_proof("MALLORY", CUSTOMER_LINK_SECRET),
                      issue_customer_proof("VICTIM-1", OTHER_SECRET), unsigned(
                          claims("VICTIM-1"))):
            reply = await register(api, "VICTIM-1", proof)
            assert reply.status == 403, reply
        # The attacker falls back to an anonymous device, then tries to link it by PATCH.
        mallory = await api.device(unique_token("mallory"))
        reply = await api.call("PATCH", "/v1/devices/me", key=mallory.token,
                               json={"customer_id": "VICTIM-1"})
        assert reply.status == 403
        start = datetime.now(UTC) - timedelta(minutes=5)
        (await api.pings(mallory, walk(shop.lat, shop.lon, -400, 0, 9, start))).ok(202)
        sent = await finished_delivery(api, mallory)
        assert sent["status"] == "sent"
        pushed = await emulator_messages(emulator.base_url, mallory.fcm_token)
        body = pushed[-1]["message"]["notification"]["body"]
        assert "Ada" not in body, body

        victim = await api.device(unique_token("victim"), customer_id="VICTIM-1")
        (await api.pings(victim, walk(shop.lat, shop.lon, -400, 0, 9, start))).ok(202)
        delivered = await finished_delivery(api, victim)
        assert delivered["status"] == "sent", delivered  # not daily_cap: the cap is intact
        pushed = await emulator_messages(emulator.base_url, victim.fcm_token)
        body = pushed[-1]["message"]["notification"]["body"]
        assert "Ada" in body, body


def test_config_refuses_short_secret_and_bad_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="customer_link_secret"):
        load_config(path=None, environ={"GEOPUSH_AUTH_CUSTOMER_LINK_SECRET": "short"})
    with pytest.raises(ConfigError, match="customer_link_public_key_file"):
        load_config(path=None, environ={
            "GEOPUSH_AUTH_CUSTOMER_LINK_PUBLIC_KEY_FILE": str(tmp_path / "nope.pem")})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_config(path=None, environ={"GEOPUSH_AUTH_CUSTOMER_LINK_PUBLIC_KEY_FILE": str(junk)})
    config = load_config(path=None, environ={
        "GEOPUSH_AUTH_CUSTOMER_LINK_SECRET": CUSTOMER_LINK_SECRET})
    assert config.redacted()["auth"]["customer_link_secret"] == "***"
