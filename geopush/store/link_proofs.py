"""Spending customer proofs: a `jti` links once, and every proof ages from first sight.

The check must hold across every geopush process, so it lives in PostgreSQL: the primary key
on `use_key` makes two devices racing with one proof end with one link.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from geopush.identity import CLOCK_SKEW_S, CustomerProofError, VerifiedProof

_SPEND = """
INSERT INTO link_proofs (use_key, first_seen_at, forget_after) VALUES ($1, $2, $3)
ON CONFLICT (use_key) DO NOTHING
RETURNING first_seen_at
"""
_FIRST_SEEN = "SELECT first_seen_at FROM link_proofs WHERE use_key = $1"
_FORGET = """
WITH gone AS (DELETE FROM link_proofs WHERE use_key IN (
    SELECT use_key FROM link_proofs WHERE forget_after < $1 LIMIT $2) RETURNING 1)
SELECT count(*) FROM gone
"""


async def spend_proof(conn: asyncpg.Connection, proof: VerifiedProof, *,
                      max_lifetime_s: float, now: datetime) -> None:
    """Record this use of `proof`; CustomerProofError if it was spent or has aged out."""
    lifetime = timedelta(seconds=max_lifetime_s)
    skew = timedelta(seconds=CLOCK_SKEW_S)
    forget = min(proof.expires_at, now + lifetime) + skew
    if await conn.fetchval(_SPEND, proof.use_key, now, forget) is not None:
        return
    if proof.has_jti:
        raise CustomerProofError("customer_proof was already used (its jti links once)")
    first_seen = await conn.fetchval(_FIRST_SEEN, proof.use_key)
    if first_seen is not None and now > first_seen + lifetime + skew:
        raise CustomerProofError(
            f"customer_proof was first seen more than {max_lifetime_s:g} s ago: ask the login"
            " backend for a fresh one")


async def forget_spent_proofs(conn: asyncpg.Connection, now: datetime, chunk: int) -> int:
    """Delete proofs that can no longer be valid; return how many (retention calls it)."""
    total = 0
    while True:
        n: int = await conn.fetchval(_FORGET, now, chunk)
        total += n
        if n < chunk:
            return total
