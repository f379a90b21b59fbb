"""Fill the outbox directly: the input of the sender, for crash and scale tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg


async def queue_deliveries(conn: asyncpg.Connection, n: int, token_prefix: str,
                           ttl_s: int = 3600) -> list[uuid.UUID]:
    """n devices with tokens `{token_prefix}{i}` and one queued delivery each."""
    now = datetime.now(UTC)
    devices = [uuid.uuid4() for _ in range(n)]
    deliveries = [uuid.uuid4() for _ in range(n)]
    offer = uuid.uuid4()
    await conn.execute(
        "INSERT INTO devices (device_id, token_hash, fcm_token, platform, locale, timezone,"
        " consent_location, consent_push)"
        " SELECT d, h, t, 'android', 'en', 'UTC', true, true"
        " FROM unnest($1::uuid[], $2::bytea[], $3::text[]) AS u(d, h, t)",
        devices, [hashlib.sha256(d.bytes).digest() for d in devices],
        [f"{token_prefix}{i}" for i in range(n)],
    )
    await conn.execute(
        "INSERT INTO deliveries (delivery_id, device_id, offer_id, trigger, event_ts, status,"
        " expires_at, title, body)"
        " SELECT id, d, $3, 'enter', $4, 'queued', $5, 'Hello', 'World'"
        " FROM unnest($1::uuid[], $2::uuid[]) AS u(id, d)",
        deliveries, devices, offer, now, now + timedelta(seconds=ttl_s),
    )
    return deliveries
