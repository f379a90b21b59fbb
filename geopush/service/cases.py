"""A recovery case from opening to resolution, and whether the customer came back.

A case is `recovered` by a verified visit (a dwell, at any store) of the customer — any of
their devices — or, without a customer, of the device, after it opened and within
`[feedback] recovery_window_days`. That is read from the visits geopush already records and
stamped on the case the first time it is seen (`refresh_recovered`), so no ingest path has
to know about cases. Time to first response runs from opening to the first move off `open`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.errors import Invalid, NotFound
from geopush.store.keyset import Listing

STATUSES = ("open", "contacted", "resolved")
MAX_RESOLUTION = 1000
COLUMNS = ("case_id, response_id, store_id, opened_at, status, first_response_at, resolved_at,"
           " resolution, recovered_at, updated_at")

# Cases that may still recover: not yet recovered, opened within the window. Read in
# steps rather than one UPDATE joined with `events` and `devices`: the cases live on a
# Citus cluster's coordinator alone, and Citus cannot join such a table with distributed
# ones; the middle steps are plain reads of the distributed tables by key.
_OPEN = """
SELECT case_id, device_id, customer_id, opened_at FROM service_cases
WHERE recovered_at IS NULL
  AND opened_at >= $2::timestamptz - make_interval(days => $1::int)
  AND (device_id IS NOT NULL OR customer_id IS NOT NULL)
"""
_PHONES = """
SELECT customer_id, device_id FROM devices WHERE customer_id = ANY($1::text[])
"""
_DWELLS = """
SELECT device_id, ts FROM events
WHERE type = 'dwell' AND device_id = ANY($1::uuid[]) AND ts > $2
"""
_STAMP = """
UPDATE service_cases c SET recovered_at = u.ts
FROM unnest($1::uuid[], $2::timestamptz[]) AS u(case_id, ts)
WHERE c.case_id = u.case_id AND c.recovered_at IS NULL
"""
_PATCH = f"""
UPDATE service_cases SET
    status = coalesce($2, status),
    resolution = CASE WHEN $3 THEN $4 ELSE resolution END,
    first_response_at = CASE WHEN $2 IS NOT NULL AND $2 <> 'open'
                             THEN coalesce(first_response_at, $5) ELSE first_response_at END,
    resolved_at = CASE WHEN $2 = 'resolved' THEN coalesce(resolved_at, $5)
                       WHEN $2 IS NOT NULL THEN NULL ELSE resolved_at END,
    updated_at = $5
WHERE case_id = $1
RETURNING {COLUMNS}
"""


async def refresh_recovered(conn: asyncpg.Connection, window_days: int, now: datetime) -> int:
    """Stamp the cases whose customer has come back since they were last read; how many."""
    cases = await conn.fetch(_OPEN, window_days, now)
    if not cases:
        return 0
    phones: dict[str, list[UUID]] = {}
    for r in await conn.fetch(_PHONES, list({c["customer_id"] for c in cases
                                             if c["customer_id"] is not None})):
        phones.setdefault(r["customer_id"], []).append(r["device_id"])
    whose = {c["case_id"]: {*([c["device_id"]] if c["device_id"] else []),
                            *phones.get(c["customer_id"], [])} for c in cases}
    dwells: dict[UUID, list[datetime]] = {}
    for r in await conn.fetch(_DWELLS, list(set().union(*whose.values())),
                              min(c["opened_at"] for c in cases)):
        dwells.setdefault(r["device_id"], []).append(r["ts"])
    window = timedelta(days=window_days)
    ids, stamps = [], []
    for c in cases:
        seen = [ts for dev in whose[c["case_id"]] for ts in dwells.get(dev, [])
                if c["opened_at"] < ts <= c["opened_at"] + window]
        if seen:
            ids.append(c["case_id"])
            stamps.append(min(seen))
    if not ids:
        return 0
    status = await conn.execute(_STAMP, ids, stamps)
    return int(status.split()[-1])


def parse_patch(body: Any) -> tuple[str | None, bool, str | None]:
    """(status or None, resolution given, resolution) from a PATCH body; `Invalid` if bad."""
    if not isinstance(body, dict):
        raise Invalid(None, "the body must be a JSON object")
    for key in body:
        if key not in ("status", "resolution"):
            raise Invalid(key, "unknown field")
    status = body.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}")
    resolution = body.get("resolution")
    if resolution is not None:
        if not isinstance(resolution, str):
            raise Invalid("resolution", "must be text")
        if len(resolution) > MAX_RESOLUTION or "\x00" in resolution:
            raise Invalid("resolution", f"must be at most {MAX_RESOLUTION} characters of text")
    if status is None and "resolution" not in body:
        raise Invalid(None, "nothing to change: give status and/or resolution")
    return status, "resolution" in body, resolution


async def patch_case(conn: asyncpg.Connection, case_id: UUID, status: str | None,
                     has_resolution: bool, resolution: str | None,
                     now: datetime) -> asyncpg.Record:
    row = await conn.fetchrow(_PATCH, case_id, status, has_resolution, resolution, now)
    if row is None:
        raise NotFound("case")
    return row


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, PostgreSQL's
    percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def recovery_figures(cases: list[asyncpg.Record], sla_s: int) -> dict[str, Any]:
    """Time to first response (p50, p90, seconds), share resolved within the SLA, share
    recovered, over `cases` (rows with opened_at, first_response_at, resolved_at,
    recovered_at)."""
    waits = [(c["first_response_at"] - c["opened_at"]).total_seconds()
             for c in cases if c["first_response_at"] is not None]
    n = len(cases)
    within = sum(1 for c in cases if c["resolved_at"] is not None
                 and c["resolved_at"] - c["opened_at"] <= timedelta(seconds=sla_s))
    recovered = sum(1 for c in cases if c["recovered_at"] is not None)
    return {
        "cases": n,
        "open": sum(1 for c in cases if c["status"] == "open"),
        "first_response_p50_s": percentile(waits, 0.5),
        "first_response_p90_s": percentile(waits, 0.9),
        "resolved_within_sla": within / n if n else None,
        "recovered": recovered / n if n else None,
        "sla_s": sla_s,  # what "within the SLA" meant: `[feedback] recovery_sla_s`
    }


async def lock_device_row(conn: asyncpg.Connection, device_id: UUID) -> asyncpg.Record | None:
    """The answering device's row, locked for the transaction (one answer at a time)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
    return row


async def case_times(conn: asyncpg.Connection, now: datetime, days: int,
                     store_id: UUID | None) -> list[asyncpg.Record]:
    """The cases opened in the last `days` (of one store, or all): what the recovery
    figures are computed from."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT opened_at, status, first_response_at, resolved_at, recovered_at"
        " FROM service_cases"
        " WHERE opened_at >= $1::timestamptz - make_interval(days => $2::int)"
        " AND ($3::uuid IS NULL OR store_id = $3)", now, days, store_id)
    return rows


# `GET /v1/cases`: newest opened first, through the one keyset-pagination helper.
LISTING = Listing("service_cases", f"{COLUMNS}, opened_at AS created_at", "case_id",
                  newest_first=True, time_column="opened_at")


async def case_status(conn: asyncpg.Connection, case_id: UUID) -> str | None:
    status: str | None = await conn.fetchval(
        "SELECT status FROM service_cases WHERE case_id = $1", case_id)
    return status
