"""Leaderboards computed once per period and store, and read from memory (SPEC section 11).

Summing a period's ledger for every read cost 0.7 s at a million rows, and phones poll
leaderboards: a few dozen of them held the database's connections and genuine pings waited.
So each process keeps each board (period, its bounds, store) computed at most
`[loyalty] leaderboard_refresh_s` ago, one computation at a time per board however many
phones ask meanwhile, and a read costs two indexed lookups: the caller's own points, and
which of the names about to be shown still consent (a withdrawal takes effect at once;
an opt-in or new points show at the next refresh, or at once when this process took the
opt-in).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.decide import zone
from geopush.loyalty.rules import display_name, subject_of
from geopush.timefmt import format_ts_or_none

# The points that count on a leaderboard: earned, not adjusted or spent.
_EARNED_REASONS = "('checkin', 'purchase', 'challenge', 'badge')"
_EARNED = f"""
SELECT subject, sum(points)::bigint AS points FROM loyalty_ledger
WHERE reason IN {_EARNED_REASONS} AND subject IS NOT NULL
  AND ts >= $1 AND ts < $2 AND $3::uuid IS NULL
GROUP BY subject
"""
_EARNED_AT_STORE = f"""
SELECT subject, sum(points)::bigint AS points FROM loyalty_ledger
WHERE reason IN {_EARNED_REASONS} AND subject IS NOT NULL
  AND store_id IS NOT NULL AND store_id = $3 AND ts >= $1 AND ts < $2
GROUP BY subject
"""
# Every opted-in customer with points in the period, best first, names for the first
# `$4` (a board shows at most that many).
_BOARD = """
WITH totals AS ({earned}),
optin AS (
    SELECT DISTINCT customer_id FROM devices
    WHERE consent_leaderboard AND customer_id IS NOT NULL
), board AS (
    SELECT o.customer_id, t.points,
           row_number() OVER (ORDER BY t.points DESC, o.customer_id) AS n
    FROM totals t JOIN optin o ON t.subject = 'c:' || o.customer_id
)
SELECT b.customer_id, b.points, c.first_name, c.last_initial
FROM board b LEFT JOIN customers c ON c.customer_id = b.customer_id AND b.n <= $4
ORDER BY b.n
"""
_MINE = f"""
SELECT coalesce(sum(points), 0)::bigint FROM loyalty_ledger
WHERE subject = $1 AND reason IN {_EARNED_REASONS} AND ts >= $2 AND ts < $3
  AND ($4::uuid IS NULL OR store_id = $4)
"""
_STILL_IN = """
SELECT DISTINCT customer_id FROM devices
WHERE consent_leaderboard AND customer_id = ANY($1::text[])
"""

# The longest board a read may ask for (`limit`).
MAX_SHOWN = 100

Key = tuple[str, datetime, datetime, UUID | None]


@dataclass(frozen=True)
class Entry:
    customer_id: str
    points: int
    first_name: str | None
    last_initial: str | None


@dataclass
class Board:
    """One period's board: the first `MAX_SHOWN` with names, every score for ranks."""

    top: list[Entry]
    # Every opted-in score, negated and ascending, for "how many are ahead of me".
    scores: list[int]
    computed_at: float

    def ahead_of(self, points: int) -> int:
        return bisect.bisect_left(self.scores, -points)


@dataclass
class Leaderboards:
    """This process's boards, each refreshed at most every `refresh_s` seconds."""

    refresh_s: float
    _boards: dict[Key, Board] = field(default_factory=dict)
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)

    async def board(self, pool: asyncpg.Pool, key: Key) -> Board:
        board = self._boards.get(key)
        if board is not None and time.monotonic() - board.computed_at < self.refresh_s:
            return board
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one computation per board, whoever else is waiting for it
            board = self._boards.get(key)
            if board is None or time.monotonic() - board.computed_at >= self.refresh_s:
                board = await _compute(pool, key)
                self._forget_old(key)
                self._boards[key] = board
        return board

    def invalidate(self) -> None:
        """Someone's consent changed here: compute afresh at the next read."""
        self._boards.clear()

    def _forget_old(self, key: Key) -> None:
        # Boards of past periods are never asked for again.
        for old in [k for k in self._boards if k[2] <= key[1]]:
            self._boards.pop(old, None)
            self._locks.pop(old, None)


async def _compute(pool: asyncpg.Pool, key: Key) -> Board:
    _, start, end, store_id = key
    if store_id is None:
        rows = await pool.fetch(_BOARD.format(earned=_EARNED), start, end, None, MAX_SHOWN)
    else:
        rows = await pool.fetch(_BOARD.format(earned=_EARNED_AT_STORE),
                                start, end, store_id, MAX_SHOWN)
    top = [Entry(r["customer_id"], int(r["points"]), r["first_name"], r["last_initial"])
           for r in rows[:MAX_SHOWN]]
    return Board(top=top, scores=[-int(r["points"]) for r in rows],
                 computed_at=time.monotonic())


@dataclass(frozen=True)
class Standing:
    """What one caller sees: the ranked names still consenting, and their own place."""

    items: list[tuple[int, Entry]]
    my_points: int
    my_rank: int


async def standing(pool: asyncpg.Pool, board: Board, subject: str, key: Key,
                   limit: int) -> Standing:
    _, start, end, store_id = key
    async with pool.acquire() as conn:
        mine = int(await conn.fetchval(_MINE, subject, start, end, store_id))
        shown = board.top[:limit * 2]  # room for some who withdrew since the refresh
        still: set[str] = set()
        if shown:
            still = {r[0] for r in await conn.fetch(
                _STILL_IN, [e.customer_id for e in shown])}
    items: list[tuple[int, Entry]] = []
    rank, last_points = 0, None
    for position, entry in enumerate(e for e in shown if e.customer_id in still):
        if entry.points != last_points:  # equal points share a rank
            rank, last_points = position + 1, entry.points
        items.append((rank, entry))
        if len(items) == limit:
            break
    return Standing(items=items, my_points=mine, my_rank=board.ahead_of(mine) + 1)


def period_bounds(period: str, now: datetime, tz: str | None) -> tuple[datetime, datetime]:
    """This calendar week (from Monday) or month, in the caller's time zone, as UTC."""
    here = zone(tz)
    today = now.astimezone(here).date()
    if period == "week":
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    else:
        start = today.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)

    def instant(d: date) -> datetime:
        return datetime.combine(d, day_time(0), tzinfo=here).astimezone(UTC)

    return instant(start), instant(end)


async def device_leaderboard(pool: asyncpg.Pool, boards: Leaderboards, device_id: UUID,
                             period: str, store_id: UUID | None, limit: int, now: datetime
                             ) -> dict[str, Any]:
    """GET /v1/leaderboard's answer: this `period` (week or month, in the device's zone) at
    `store_id` (None: everywhere), the first `limit` names and the caller's own standing."""
    device = await pool.fetchrow(
        "SELECT customer_id, timezone FROM devices WHERE device_id = $1", device_id)
    start, end = period_bounds(period, now, device["timezone"])
    key = (period, start, end, store_id)
    board = await boards.board(pool, key)
    me = await standing(pool, board, subject_of(device["customer_id"], device_id), key, limit)
    items = [
        {"rank": rank, "name": display_name(e.first_name, e.last_initial),
         "points": e.points, "me": e.customer_id == device["customer_id"]}
        for rank, e in me.items
    ]
    return {
        "period": period, "from": format_ts_or_none(start), "to": format_ts_or_none(end),
        "store_id": None if store_id is None else str(store_id),
        "items": items,
        "me": {"rank": me.my_rank, "points": me.my_points,
               "listed": any(i["me"] for i in items)},
    }
