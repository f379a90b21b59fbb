"""A feedback request waits in the outbox with a not-before time (SPEC section 14): the
sender's claim must stay one query on the `deliveries_due` index, however many requests
wait, rather than scan them."""

from __future__ import annotations

import json

import asyncpg

from geopush.delivery.outbox import _CLAIM


def _nodes(plan: dict) -> list[dict]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def test_claim_reads_the_due_index_past_waiting_feedback_requests(
    db: asyncpg.Connection,
) -> None:
    # 20,000 feedback requests queued for later, 10 deliveries due now.
    await db.execute("""
        INSERT INTO deliveries (delivery_id, device_id, offer_id, trigger, event_ts, status,
                                next_attempt_at, expires_at)
        SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
               CASE WHEN i <= 10 THEN 'enter' ELSE 'feedback' END, now(), 'queued',
               CASE WHEN i <= 10 THEN now() - interval '1 second'
                    ELSE now() + make_interval(secs => 600 + i) END,
               now() + interval '2 hours'
        FROM generate_series(1, 20010) AS i""")
    await db.execute("ANALYZE deliveries")
    raw = await db.fetchval("EXPLAIN (FORMAT JSON) " + _CLAIM, 50, 30.0)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    nodes = _nodes(plan)
    scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes
             if "Scan" in n["Node Type"]]
    assert ("Index Scan", "deliveries", "deliveries_due") in scans, scans
    assert not any(t == "Seq Scan" for t, _, _ in scans), scans
    async with db.transaction():
        claimed = await db.fetch(_CLAIM, 50, 30.0)
    assert len(claimed) == 10  # only the due ones
