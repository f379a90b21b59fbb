"""API keys and device tokens: made random, shown once, stored only as SHA-256 hashes.

Keys are made and revoked here, for `POST`/`DELETE /v1/keys` and `geopush keys`.

They are 256-bit random strings, so a plain hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg

from geopush.codes import Role
from geopush.store.keyset import Listing


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_key(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection, role: Role, name: str
) -> dict[str, str]:
    """Make a key; used by `POST /v1/keys` and by `geopush keys create`."""
    key = new_secret("gpk")
    key_id = uuid.uuid4()
    await pool_or_conn.execute(
        "INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, $2, $3, $4)",
        key_id, name, role.value, hash_secret(key),
    )
    return {"id": str(key_id), "key": key, "role": role.value}


_REVOKE = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, name, role, created_at, revoked_at
"""


async def revoke_key(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection, key_id: uuid.UUID
) -> asyncpg.Record | None:
    """Revoke a key (again is a no-op); None when there is no such key."""
    return await pool_or_conn.fetchrow(_REVOKE, key_id)


# The admin's list of keys (GET /v1/keys): oldest first, by keyset; never the key itself.
LISTING = Listing("api_keys", "id, name, role, created_at, revoked_at", "id")


async def key_by_hash(pool: asyncpg.Pool, digest: bytes) -> asyncpg.Record | None:
    """The live (not revoked) key with this hash: its id and role."""
    return await pool.fetchrow(
        "SELECT id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", digest)
