"""Devices: registration by the app, profile and consent by the device itself, erasure."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.auth import caller, hash_secret, new_secret, require_device
from geopush.api.body import field_error, read_model
from geopush.api.openapi import BY_APP, BY_DEVICE, DEVICE, DEVICE_CREATED, documented
from geopush.api.registration_limits import check_registration_rate
from geopush.api.runtime import RUNTIME, Runtime
from geopush.api.schema import ABSENT, Chars, NonBlank, RequestBody, TimeZone
from geopush.codes import Platform
from geopush.identity import VerifiedProof, verify_customer_proof
from geopush.loyalty.merge import merge_device_into_customer
from geopush.store.consent import follow_customer_consent, record_consent
from geopush.store.devices import (
    device_row,
    insert_device,
    lock_device,
    set_consent,
    set_leaderboard_consent,
    set_recognition_consent,
    update_device,
)
from geopush.store.link_proofs import spend_proof
from geopush.timefmt import format_ts


def device_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "device_id": str(row["device_id"]),
        "platform": row["platform"],
        "locale": row["locale"],
        "timezone": row["timezone"],
        "customer_id": row["customer_id"],
        "fcm_token_active": row["fcm_token_active"] and row["has_fcm_token"],
        "consent": {
            "location": row["consent_location"],
            "push": row["consent_push"],
            "categories": row["consent_categories"],
            "leaderboard": row["consent_leaderboard"],
            "recognition": row["consent_recognition"],
        },
        "created_at": format_ts(row["created_at"]),
        "updated_at": format_ts(row["updated_at"]),
    }


_LOCALE = r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$"
Locale = Annotated[str, Field(min_length=2, max_length=35, pattern=_LOCALE,
                              json_schema_extra={"examples": ["fr-CA"]})]


class DeviceRegistration(RequestBody):
    """`POST /v1/devices`: locale and timezone are required, so quiet hours and the message
    language are the device's own from its first ping."""

    fcm_token: Annotated[str, NonBlank(4096)]
    platform: Annotated[Platform, Field(strict=False)]
    locale: Locale
    timezone: TimeZone
    customer_id: Annotated[str, NonBlank(200)] | None = None
    customer_proof: Annotated[str, Chars(8192)] | None = None


class DeviceUpdate(RequestBody):
    """`PATCH /v1/devices/me`: absent fields are unchanged; `customer_id: null` unlinks."""

    fcm_token: Annotated[str, NonBlank(4096)] = ABSENT
    locale: Locale = ABSENT
    timezone: TimeZone = ABSENT
    customer_id: Annotated[str, NonBlank(200)] | None = None
    customer_proof: Annotated[str, Chars(8192)] | None = None


class Consent(RequestBody):
    location: bool
    push: bool
    categories: list[Annotated[str, NonBlank(100)]] | None = None
    leaderboard: bool | None = None
    recognition: bool | None = None  # SPEC 15: staff may greet this customer by name


def _check_link(rt: Runtime, customer_id: str | None, proof: str | None
                ) -> VerifiedProof | None:
    """403 `customer_unverified` unless `proof` shows the device's user is `customer_id`."""
    if customer_id is None:
        if proof is not None:
            raise field_error("customer_proof", "is only used with customer_id")
        return None
    return verify_customer_proof(proof, customer_id, rt.link_keys,
                                 max_lifetime_s=rt.config.auth.max_proof_lifetime_s,
                                 now=rt.now())


async def _spend(rt: Runtime, conn: asyncpg.Connection, proof: VerifiedProof | None) -> None:
    """Spend the proof in the transaction that links, so a refused link spends nothing."""
    if proof is None:
        return
    await spend_proof(conn, proof, max_lifetime_s=rt.config.auth.max_proof_lifetime_s,
                      now=rt.now())


@documented("Register a device (consent starts off)", auth=BY_APP, body=DeviceRegistration,
            status=201, errors=(429,), response=DEVICE_CREATED)
async def register(request: web.Request) -> web.Response:
    principal = caller(request)
    await check_registration_rate(request, principal)
    rt = request.app[RUNTIME]
    body = await read_model(request, DeviceRegistration)
    proof = _check_link(rt, body.customer_id, body.customer_proof)
    device_id = uuid.uuid4()
    token = new_secret("gpd")
    async with rt.pool.acquire() as conn, conn.transaction():
        await _spend(rt, conn, proof)
        await insert_device(conn, device_id, hash_secret(token), body.fcm_token,
                            body.platform, body.locale, body.timezone, body.customer_id)
    return web.json_response({"device_id": str(device_id), "device_token": token}, status=201)


@documented("Change the device: token, locale, timezone, customer link (with proof)",
            auth=BY_DEVICE, body=DeviceUpdate, errors=(403,), response=DEVICE)
async def patch_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    rt = request.app[RUNTIME]
    body = await read_model(request, DeviceUpdate)
    fields = body.given()  # a null fcm_token, locale or timezone is refused by the model
    proof_text = fields.pop("customer_proof", None)
    proof = None
    if "customer_id" in fields:
        proof = _check_link(rt, fields["customer_id"], proof_text)
    elif proof_text is not None:
        raise field_error("customer_proof", "is only used with customer_id")
    async with rt.pool.acquire() as conn, conn.transaction():
        await _spend(rt, conn, proof)
        # The device's row lock first, as ingest takes it, then what the link changes.
        was = await lock_device(conn, device_id)
        row = await update_device(conn, device_id, fields)
        if "customer_id" in fields:
            if was is None and fields["customer_id"] is not None:
                await merge_device_into_customer(conn, device_id, fields["customer_id"],
                                                 rt.now())
            await follow_customer_consent(conn, device_id, fields["customer_id"])
            row = await device_row(conn, device_id)
    return web.json_response(device_json(row))


@documented("The calling device", auth=BY_DEVICE, response=DEVICE)
async def get_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    row = await device_row(request.app[RUNTIME].pool, device_id)
    return web.json_response(device_json(row))


@documented("Set consent; withdrawal takes effect at once", auth=BY_DEVICE, body=Consent,
            response=DEVICE)
async def put_consent(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    consent = await read_model(request, Consent)
    location, push, categories = consent.location, consent.push, consent.categories
    leaderboard = consent.leaderboard
    rt = request.app[RUNTIME]
    if categories is not None:
        categories = list(dict.fromkeys(categories))  # a repeat says nothing more
        most = rt.config.limits.max_consent_categories
        if len(categories) > most:
            raise field_error("categories", f"at most {most} categories")
    pool = rt.pool
    async with pool.acquire() as conn, conn.transaction():
        # The device row is locked first, as ingest and the sweeper lock it.
        now = await device_row(conn, device_id, lock=True)
        same_recognition = consent.recognition is None or (
            now is not None and now["consent_recognition"] == consent.recognition)
        if _same_consent(now, location, push, categories, leaderboard) and same_recognition:
            # Apps send their consent at every start: an unchanged one is no change to
            # log, so replaying it cannot grow the log.
            return web.json_response(device_json(now))
        row = await set_consent(conn, device_id, location, push, categories)
        withdrawal = await record_consent(conn, device_id, location=location, push=push,
                                          categories=categories)
        if leaderboard is not None:
            row = await set_leaderboard_consent(conn, device_id, leaderboard)
            rt.leaderboards.invalidate()
        if consent.recognition is not None:
            row = await set_recognition_consent(conn, device_id, consent.recognition)
    withdrawal.observe()
    return web.json_response(device_json(row))


def _same_consent(row: asyncpg.Record, location: bool, push: bool,
                  categories: list[str] | None, leaderboard: bool | None) -> bool:
    stored = row["consent_categories"]
    return (row["consent_location"] == location and row["consent_push"] == push
            and (None if stored is None else list(stored)) == categories
            and (leaderboard is None or row["consent_leaderboard"] == leaderboard))


@documented("Erase the device's personal data", auth=BY_DEVICE, status=204, media=None)
async def delete_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    from geopush.store.erasure import erase_device

    pool = request.app[RUNTIME].pool
    async with pool.acquire() as conn, conn.transaction():
        await erase_device(conn, device_id)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/devices", register),
        web.get("/v1/devices/me", get_me),
        web.patch("/v1/devices/me", patch_me),
        web.put("/v1/devices/me/consent", put_consent),
        web.delete("/v1/devices/me", delete_me),
    ]
