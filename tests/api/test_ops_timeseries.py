"""Per-minute figures for the dashboard, and an offer's figures per day, add up to the totals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from tests.api_client import Api
from tests.conftest import unique_token
from tests.delivery_scenario import finished_delivery, open_shop, walk_in
from tests.eventually import eventually


async def test_per_minute_counts_match_the_rows(gp: Api, db: asyncpg.Connection) -> None:
    shop = await open_shop(gp)
    ok_device = await gp.device(unique_token("ok"))
    dead = await gp.device(unique_token("fail-unregistered-x"))
    leaver = await gp.device(unique_token("ok"))
    replies = [await walk_in(gp, shop, ok_device), await walk_in(gp, shop, dead),
               await walk_in(gp, shop, leaver, then_out=True)]
    sent = await finished_delivery(gp, ok_device)
    await finished_delivery(gp, dead)
    await finished_delivery(gp, leaver)

    async def settled() -> dict[str, Any] | None:
        t = (await gp.as_role("ops", "GET", "/v1/ops/timeseries?minutes=5")).ok(200)
        return t if sum(t["sent"]) == 1 and t["failed"] else None

    t = await eventually(settled)
    assert t["minutes"] == 5 and t["step_s"] == 60 and len(t["pings"]) == 5
    start = datetime.fromisoformat(t["start"])
    assert start.second == 0 and (datetime.now(UTC) - start).total_seconds() < 5 * 60
    assert sum(t["pings"]) == sum(r["accepted"] for r in replies)
    assert {k: sum(v) for k, v in t["events"].items()} == {"enter": 3, "dwell": 0, "exit": 1}
    assert {k: sum(v) for k, v in t["decisions"].items()} == {
        "queued": 3, "suppressed": 0, "control": 0}
    assert {k: sum(v) for k, v in t["failed"].items()} == {"unregistered": 1}
    assert {k: sum(v) for k, v in t["cancelled"].items()} == {"left_geofence": 1}
    # The latency is event ts → FCM accepted of the one sent delivery.
    row = await db.fetchrow("SELECT extract(epoch FROM sent_at - event_ts) AS s"
                            " FROM deliveries WHERE delivery_id = $1::uuid", sent["id"])
    window = t["latency"]["window"]
    assert window["count"] == 1
    assert abs(window["p50"] - float(row["s"])) < 1e-3
    assert abs(window["p99"] - float(row["s"])) < 1e-3
    assert [v for v in t["latency"]["p50"] if v is not None] == [window["p50"]]

    # Only ops read it; a bad window is a 400.
    assert (await gp.as_role("marketer", "GET", "/v1/ops/timeseries")).status == 403
    assert (await gp.as_role("ops", "GET", "/v1/ops/timeseries?minutes=0")).status == 400
    assert (await gp.as_role("ops", "GET", "/v1/ops/timeseries?minutes=x")).status == 400


async def test_an_offers_days_add_up_to_its_stats(gp: Api) -> None:
    shop = await open_shop(gp)
    device = await gp.device(unique_token("ok"))
    await walk_in(gp, shop, device)
    delivery = await finished_delivery(gp, device)
    assert (await gp.call("POST", f"/v1/deliveries/{delivery['id']}/opened",
                          key=device.token)).status == 204

    daily = (await gp.as_role("ops", "GET",
                              f"/v1/offers/{shop.offer['id']}/stats/daily?days=3")).ok(200)
    stats = (await gp.as_role("marketer", "GET", f"/v1/offers/{shop.offer['id']}/stats")).ok(200)
    today = datetime.now(UTC).date().isoformat()
    assert len(daily["days"]) == 3 and daily["days"][-1] == today
    for figure in ("triggered", "control", "queued", "sent", "opened", "redeemed"):
        assert sum(daily[figure]) == stats[figure], figure
    assert daily["sent"] == [0, 0, 1] and daily["opened"] == [0, 0, 1]

    missing = "00000000-0000-0000-0000-000000000000"
    assert (await gp.as_role("ops", "GET", f"/v1/offers/{missing}/stats/daily")).status == 404
    assert (await gp.as_role("ops", "GET", "/v1/offers/nope/stats/daily")).status in (400, 404)
    bad = f"/v1/offers/{shop.offer['id']}/stats/daily?days=999"
    assert (await gp.as_role("ops", "GET", bad)).status == 400
    assert (await gp.as_role("app", "GET", f"/v1/offers/{shop.offer['id']}/stats/daily")
            ).status == 403


async def test_latency_leaves_out_feedback_requests_delayed_on_purpose(
    gp: Api, db: asyncpg.Connection
) -> None:
    """A feedback request waits `[feedback] delay_s` after the exit by design: it is counted
    as sent, not in how fast geopush answers a visit."""
    from tests.outbox_fill import queue_deliveries

    quick, slow = await queue_deliveries(db, 2, unique_token("lat"))
    now = datetime.now(UTC)
    await db.execute("UPDATE deliveries SET status = 'sent', sent_at = $2::timestamptz,"
                     " event_ts = $2::timestamptz - interval '2 seconds'"
                     " WHERE delivery_id = $1", quick, now)
    await db.execute("UPDATE deliveries SET status = 'sent', sent_at = $2::timestamptz,"
                     " trigger = 'feedback', event_ts = $2::timestamptz - interval '10 minutes'"
                     " WHERE delivery_id = $1", slow, now)
    t = (await gp.as_role("ops", "GET", "/v1/ops/timeseries?minutes=5")).ok(200)
    window = t["latency"]["window"]
    assert window["count"] == 2
    assert abs(window["p99"] - 2.0) < 1e-3 and abs(window["p50"] - 2.0) < 1e-3
