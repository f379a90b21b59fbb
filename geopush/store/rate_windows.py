"""Fixed-window rate counters in PostgreSQL, shared by every geopush process.

One statement counts a request against all its limits at once: an upsert that adds one to
each subject's row for the current window and returns the new counts. The window comes
from the database clock, so processes on machines whose clocks differ still share it.

Why a fixed window in a table, rather than a token bucket or a sliding log: the upsert is
one row update per subject, atomic under concurrency without any lock of our own, and
needs no read-modify-write round trip; a sliding log would store a row per request. The
price is the fixed window's edge: up to twice the limit can pass across a window boundary
(the end of one minute and the start of the next), which for a registration limit is fine.
Old windows are deleted by retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# Subjects are sorted before the upsert, so two requests sharing subjects lock their rows
# in the same order and never deadlock.
_HIT = """
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM {now}) / $2::float8) * $2::float8) AS start
)
INSERT INTO rate_windows AS r (subject, window_start, hits)
SELECT s, w.start, 1 FROM unnest($1::bytea[]) WITH ORDINALITY AS u(s, n), w ORDER BY n
ON CONFLICT (subject, window_start) DO UPDATE SET hits = r.hits + 1
RETURNING subject, hits,
          extract(epoch FROM window_start + make_interval(secs => $2::float8) - {now})::float8
              AS left_s
"""
# The database's clock (production: shared by every process), or a given time (tests).
_HIT_NOW = _HIT.format(now="now()")
_HIT_AT = _HIT.format(now="$3::timestamptz")
_FORGET = "DELETE FROM rate_windows WHERE window_start < now() - make_interval(secs => $1)"


@dataclass(frozen=True)
class Limit:
    """At most `max_hits` requests per window for `subject` (e.g. "register:addr:10.0.0.1")."""

    subject: str
    max_hits: int


def _digest(subject: str) -> bytes:
    return hashlib.sha256(subject.encode()).digest()


async def hit(pool: asyncpg.Pool | asyncpg.Connection, limits: Sequence[Limit],
              window_s: float, at: datetime | None = None) -> float:
    """Count one request against every limit; return 0.0 if all allow it, else the seconds
    until the window of the exceeded limit ends (for Retry-After).

    The window is the one holding `at`, or (None, as in production) the database's now(),
    which every process shares; tests pass a fixed time well inside one window, so they
    never wait for a minute boundary.
    """
    if not limits:
        return 0.0
    by_digest = {_digest(limit.subject): limit for limit in limits}
    rows = await (pool.fetch(_HIT_NOW, sorted(by_digest), window_s) if at is None
                  else pool.fetch(_HIT_AT, sorted(by_digest), window_s, at))
    wait = 0.0
    for row in rows:
        if row["hits"] > by_digest[bytes(row["subject"])].max_hits:
            wait = max(wait, row["left_s"], 0.001)
    return wait


async def forget_old_windows(conn: asyncpg.Connection, older_than_s: float) -> int:
    """Delete windows that started more than `older_than_s` ago (give it the window's
    length plus how long a finished window is kept); return how many."""
    status = await conn.execute(_FORGET, older_than_s)
    return int(status.split()[-1])
