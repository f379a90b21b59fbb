"""The devices table: the statements the device routes run, each under the caller's
transaction (the caller decides what else happens in it: spending a link proof, merging
loyalty, logging consent).

The device row is always locked first, as ingest and the sweeper lock it, so the customer
lock and the consent log come after it in one order everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

COLUMNS = (
    "device_id, platform, locale, timezone, customer_id, fcm_token_active, "
    "fcm_token IS NOT NULL AS has_fcm_token, consent_location, consent_push, "
    "consent_categories, created_at, updated_at, consent_leaderboard, consent_recognition"
)
_ONE = f"SELECT {COLUMNS} FROM devices WHERE device_id = $1"
_INSERT = """
INSERT INTO devices (device_id, token_hash, fcm_token, platform, locale, timezone, customer_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_SET_CONSENT = f"""
UPDATE devices SET consent_location = $2, consent_push = $3, consent_categories = $4,
                   updated_at = now()
WHERE device_id = $1 RETURNING {COLUMNS}
"""
# Leaderboard consent is the customer's: set on one phone, it holds on all their phones.
_SET_LEADERBOARD = """
UPDATE devices SET consent_leaderboard = $2 WHERE device_id = $1
   OR customer_id = (SELECT customer_id FROM devices WHERE device_id = $1)
"""
_LOG_LEADERBOARD = """
UPDATE consent_log SET leaderboard = $2
WHERE id = (SELECT max(id) FROM consent_log WHERE device_id = $1)
"""


async def device_row(conn: asyncpg.Connection | asyncpg.Pool, device_id: UUID, *,
                     lock: bool = False) -> asyncpg.Record | None:
    """The device as the API shows it (`COLUMNS`); `lock`: FOR UPDATE, in a transaction."""
    return await conn.fetchrow(_ONE + (" FOR UPDATE" if lock else ""), device_id)


async def insert_device(conn: asyncpg.Connection, device_id: UUID, token_hash: bytes,
                        fcm_token: str, platform: str, locale: str, timezone: str,
                        customer_id: str | None) -> None:
    await conn.execute(_INSERT, device_id, token_hash, fcm_token, platform, locale, timezone,
                       customer_id)


async def lock_device(conn: asyncpg.Connection, device_id: UUID) -> str | None:
    """Lock the device row; its customer_id before the change."""
    customer_id: str | None = await conn.fetchval(
        "SELECT customer_id FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
    return customer_id


async def update_device(conn: asyncpg.Connection, device_id: UUID,
                        fields: Mapping[str, Any]) -> asyncpg.Record:
    """Set `fields` (column names from the request model, never from the client's keys);
    a new FCM token reactivates a device whose old token FCM refused."""
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=2)]
    if "fcm_token" in fields:
        sets.append("fcm_token_active = true")
    sets.append("updated_at = now()")
    row: asyncpg.Record = await conn.fetchrow(
        f"UPDATE devices SET {', '.join(sets)} WHERE device_id = $1 RETURNING {COLUMNS}",
        device_id, *fields.values())
    return row


async def set_consent(conn: asyncpg.Connection, device_id: UUID, location: bool, push: bool,
                      categories: list[str] | None) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(_SET_CONSENT, device_id, location, push,
                                              categories)
    return row


async def set_leaderboard_consent(conn: asyncpg.Connection, device_id: UUID,
                                  leaderboard: bool) -> asyncpg.Record:
    """Leaderboard consent (SPEC 11) is the customer's: set on one phone, it holds on all
    their phones, so a withdrawal anywhere takes them off every leaderboard at once."""
    await conn.execute(_SET_LEADERBOARD, device_id, leaderboard)
    await conn.execute(_LOG_LEADERBOARD, device_id, leaderboard)
    row: asyncpg.Record = await conn.fetchrow(_ONE, device_id)
    return row


_SET_RECOGNITION = """
UPDATE devices SET consent_recognition = $2 WHERE device_id = $1
   OR customer_id = (SELECT customer_id FROM devices WHERE device_id = $1)
"""
_LOG_RECOGNITION = """
UPDATE consent_log SET recognition = $2
WHERE id = (SELECT max(id) FROM consent_log WHERE device_id = $1)
"""


async def set_recognition_consent(conn: asyncpg.Connection, device_id: UUID,
                                  recognition: bool) -> asyncpg.Record:
    """Consent to be greeted by name in stores (SPEC 15) is the customer's, as leaderboard
    consent is: set on one phone, it holds on all of theirs."""
    await conn.execute(_SET_RECOGNITION, device_id, recognition)
    await conn.execute(_LOG_RECOGNITION, device_id, recognition)
    row: asyncpg.Record = await conn.fetchrow(_ONE, device_id)
    return row


async def device_by_token_hash(pool: asyncpg.Pool, digest: bytes) -> UUID | None:
    """The device whose token hashes to `digest` (None: unknown or erased)."""
    device_id: UUID | None = await pool.fetchval(
        "SELECT device_id FROM devices WHERE token_hash = $1", digest)
    return device_id
