"""Offer results: the funnel and conversions against a control group of known size.

The first test runs the real pipeline (phones walk into a store's geofence; the decision
holds some customers out as control by the stable hash); the second writes decisions
directly to pin down the edges of the definitions (window bounds, stores reached through a
geofence, group by first contact).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import asyncpg

from geopush.campaigns.decide import control_bucket
from tests.api_client import Api, Device, iso, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

LAT, LON = 39.9087, 116.3975
CSV = {"Content-Type": "text/csv"}
TX_HEADER = "transaction_id,customer_id,store_external_id,ts,amount,category\n"
NO_QUIET_HOURS = {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}


async def import_transactions(api: Api, rows: list[tuple[str, str, datetime]]) -> None:
    """Transactions (customer, store external id, time), one line each."""
    body = TX_HEADER + "".join(f"T{i},{customer},{store},{iso(ts)},10,coffee\n"
                               for i, (customer, store, ts) in enumerate(rows))
    reply = (await api.as_role("marketer", "POST", "/v1/transactions/import",
                               data=body.encode(), headers=CSV)).ok(200)
    assert reply["inserted"] == len(rows) and reply["error_count"] == 0


async def stats(api: Api, offer_id: str, role: str = "ops") -> dict[str, Any]:
    return (await api.as_role(role, "GET", f"/v1/offers/{offer_id}/stats")).ok(200)


def split_customers(offer_id: str, control: int, treatment: int) -> tuple[list[str], list[str]]:
    """Customer ids the offer's 50 % hold-out puts `control` in control, `treatment` not."""
    held, sent = [], []
    for k in range(1000):
        cid = f"cust-{k}"
        group = held if control_bucket(cid, offer_id) < 50 else sent
        if len(group) < (control if group is held else treatment):
            group.append(cid)
        if len(held) == control and len(sent) == treatment:
            return held, sent
    raise AssertionError("not enough ids")


async def test_conversions_and_lift_through_the_pipeline(
    start_server: Any, db: asyncpg.Connection, emulator: Any
) -> None:
    server = await start_server(campaigns=NO_QUIET_HOURS)
    async with Api(server.url, ADMIN_KEY) as api:
        store = await api.store(external_id="BJ-1", location={"lat": LAT, "lon": LON})
        await api.store(external_id="BJ-2")
        fence = await api.circle(LAT, LON, 150, store_id=store["id"])
        offer = await api.offer(geofence_ids=[fence["id"]], trigger="enter", control_pct=50)
        control, treatment = split_customers(offer["id"], control=4, treatment=6)

        devices: dict[str, Device] = {}
        for cid in control + treatment:
            devices[cid] = await api.device(unique_token(cid), customer_id=cid)
        silent = await api.device(unique_token("silent"), customer_id="cust-silent", push=False)
        anonymous = await api.device(unique_token("anon"))
        start = datetime.now(UTC) - timedelta(minutes=3)
        for device in [*devices.values(), silent, anonymous]:
            reply = (await api.pings(device, walk(LAT, LON, -400, 0, 9, start))).ok(202)
            assert [e["type"] for e in reply["events"]] == ["enter"]

        decided = {r["customer_id"]: r for r in await db.fetch(
            "SELECT customer_id, outcome, decided_at FROM decisions WHERE offer_id = $1",
            uuid.UUID(offer["id"]))}
        held = {c for c, r in decided.items() if r["outcome"] == "control" and c is not None}
        assert held == set(control)
        assert decided["cust-silent"]["outcome"] == "suppressed"
        anon_control = control_bucket(anonymous.device_id, offer["id"]) < 50

        def at(cid: str, days: float) -> datetime:
            return decided[cid]["decided_at"] + timedelta(days=days)

        t0, t1, t2, t3, t4, t5 = treatment
        c0, c1 = control[:2]
        await import_transactions(api, [
            (t0, "BJ-1", at(t0, 1)),           # converts
            (t1, "BJ-1", at(t1, 6.9)),         # converts, late in the window
            (t2, "BJ-1", at(t2, 8)),           # after the 7-day window
            (t3, "BJ-2", at(t3, 1)),           # at a store the offer does not target
            (t4, "BJ-1", at(t4, -1)),          # before the decision
            (t5, "", at(t5, 1)),               # online: no store
            (c0, "BJ-1", at(c0, 2)),           # a control customer who bought anyway
            (c1, "BJ-1", at(c1, 10)),          # too late
            ("cust-silent", "BJ-1", at(t0, 1)),  # never contacted: in no group
        ])

        # The app reports one push opened and one offer redeemed.
        delivery = await db.fetchrow(
            "SELECT delivery_id, device_id FROM deliveries WHERE customer_id = $1", t0)

        async def sent() -> bool:
            """Opened and redeemed count only for a push that went out (409 before)."""
            return await db.fetchval("SELECT status FROM deliveries WHERE delivery_id = $1",
                                     delivery["delivery_id"]) == "sent"
        await eventually(sent, within=30)
        token = devices[t0].token
        for what in ("opened", "redeemed"):
            assert (await api.call("POST", f"/v1/deliveries/{delivery['delivery_id']}/{what}",
                                   key=token)).status == 204

        queued = 6 + (0 if anon_control else 1)
        async def all_sent() -> dict | None:
            result = await stats(api, offer["id"])
            return result if result["sent"] >= queued else None

        result = await eventually(all_sent)

        assert result["triggered"] == 12
        assert result["suppressed"] == {"no_push_consent": 1}
        assert result["control"] == 4 + (1 if anon_control else 0)
        assert result["queued"] == result["sent"] == queued
        assert result["failed"] == {} and result["cancelled"] == {}
        assert (result["opened"], result["redeemed"]) == (1, 1)
        conversion = result["conversion"]
        assert conversion["window_days"] == 7
        assert conversion["treatment"] == {"customers": 6, "converted": 2,
                                           "rate": 2 / 6}
        assert conversion["control"] == {"customers": 4, "converted": 1, "rate": 1 / 4}
        assert conversion["lift"] == float(Fraction(2, 6) / Fraction(1, 4) - 1)  # 1/3
        assert await stats(api, offer["id"], role="marketer") == result


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
_DECISION = """
INSERT INTO decisions (decision_id, event_id, device_id, customer_id, offer_id, outcome,
                       reason, decided_at)
VALUES ($1, $2, gen_random_uuid(), $3, $4, $5, $6, $7)
"""
_DELIVERY = """
INSERT INTO deliveries (delivery_id, device_id, offer_id, trigger, event_ts, status, reason,
                        expires_at, next_attempt_at, opened_at, redeemed_at)
VALUES ($1, gen_random_uuid(), $2, 'enter', $3, $4, $5, now() + interval '1 day',
        now() + interval '1 day', $6, $7)
"""
# The queued row is neither due nor expired, so the server's sender leaves it queued while
# the test reads the funnel.


async def decide(db: asyncpg.Connection, offer_id: str, customer: str | None, outcome: str,
                 at: datetime = T0, reason: str | None = None) -> None:
    await db.execute(_DECISION, uuid.uuid4(), uuid.uuid4(), customer, uuid.UUID(offer_id),
                     outcome, reason, at)


async def test_the_edges_of_the_conversion_definition(api: Api, db: asyncpg.Connection
                                                      ) -> None:
    a = await api.store(external_id="A")
    b = await api.store(external_id="B")
    await api.store(external_id="C")
    fence_b = await api.circle(LAT, LON, 100, store_id=b["id"])
    offer = await api.offer(store_ids=[a["id"]], geofence_ids=[fence_b["id"]])
    other = await api.offer(store_ids=[a["id"]])
    oid = offer["id"]

    for customer in ("a1", "a2", "a3", "a4", "a5", "a6", "a7"):
        await decide(db, oid, customer, "queued")
    await decide(db, oid, "a6", "control", T0 + timedelta(days=1))  # first contact decides
    await decide(db, oid, "a7", "queued", T0 + timedelta(days=20))  # contacted again later
    for customer in ("b1", "b2", "b3"):
        await decide(db, oid, customer, "control", reason="control_group")
    await decide(db, oid, None, "queued")                          # a device, no customer
    await decide(db, oid, "s1", "suppressed", reason="cooldown")
    await decide(db, oid, "s2", "suppressed", reason="cooldown")
    await decide(db, oid, "s3", "suppressed", reason="segment_mismatch")
    await decide(db, str(other["id"]), "b2", "queued")               # another offer
    # Two candidates decided for one event count as one trigger.
    event = uuid.uuid4()
    for outcome, reason in (("suppressed", "lower_priority"), ("suppressed", "daily_cap")):
        await db.execute(_DECISION, uuid.uuid4(), event, "s4", uuid.UUID(oid), outcome,
                         reason, T0)

    day = timedelta(days=1)
    await import_transactions(api, [
        ("a1", "A", T0 + 7 * day),                       # converts: the window's last instant
        ("a2", "B", T0 + timedelta(hours=1)),            # converts: B through the geofence
        ("a3", "C", T0 + day),                           # C is not the offer's
        ("a4", "A", T0 + 7 * day + timedelta(seconds=1)),  # just past the window
        ("a5", "A", T0 - timedelta(seconds=1)),          # just before the decision
        ("a6", "A", T0 + 2 * day),                       # converts, in treatment
        ("a7", "A", T0 + 21 * day),                      # converts after the second contact
        ("b1", "B", T0 + 3 * day),                       # converts, in control
        ("b2", "A", T0 + 3 * day),                       # converts, in control (their
    ])                                                   # other offer's decision is moot)
    for status, reason, opened, redeemed in (
        ("sent", None, T0, T0), ("sent", None, T0, None), ("sent", None, None, None),
        ("failed", "unregistered", None, None), ("failed", "retries_exhausted", None, None),
        ("failed", "unregistered", None, None), ("cancelled", "left_geofence", None, None),
        ("queued", None, None, None),
    ):
        await db.execute(_DELIVERY, uuid.uuid4(), uuid.UUID(oid), T0, status, reason,
                         opened, redeemed)

    result = await stats(api, oid)
    assert result["triggered"] == 7 + 2 + 3 + 1 + 3 + 1
    assert result["suppressed"] == {"cooldown": 2, "segment_mismatch": 1,
                                    "lower_priority": 1, "daily_cap": 1}
    assert result["control"] == 4
    assert (result["queued"], result["sent"], result["opened"], result["redeemed"]) == (
        8, 3, 2, 1)
    assert result["failed"] == {"unregistered": 2, "retries_exhausted": 1}
    assert result["cancelled"] == {"left_geofence": 1}
    conversion = result["conversion"]
    assert conversion["treatment"]["customers"] == 7                   # a1..a7
    assert conversion["treatment"]["converted"] == 4                   # a1, a2, a6, a7
    assert conversion["control"] == {"customers": 3, "converted": 2,   # b1, b2
                                     "rate": 2 / 3}
    assert conversion["lift"] == float(Fraction(4, 7) / Fraction(2, 3) - 1)

    # Results outlive the offer; unknown offers and other roles are refused.
    assert (await api.as_role("marketer", "DELETE", f"/v1/offers/{oid}")).status == 204
    assert (await stats(api, oid))["conversion"] == conversion
    assert (await api.as_role("ops", "GET", f"/v1/offers/{uuid.uuid4()}/stats")).status == 404
    assert (await api.as_role("ops", "GET", "/v1/offers/not-an-id/stats")).status == 404
    assert (await api.as_role("app", "GET", f"/v1/offers/{oid}/stats")).status == 403


async def test_lift_is_null_without_a_converting_control_group(api: Api,
                                                               db: asyncpg.Connection) -> None:
    store = await api.store(external_id="A")
    offer = await api.offer(store_ids=[store["id"]])
    empty = await stats(api, offer["id"])
    assert empty["triggered"] == 0 and empty["conversion"]["lift"] is None
    assert empty["conversion"]["treatment"] == {"customers": 0, "converted": 0, "rate": None}

    await decide(db, offer["id"], "t1", "queued")
    await decide(db, offer["id"], "c1", "control")
    await import_transactions(api, [("t1", "A", T0 + timedelta(days=1))])
    result = (await stats(api, offer["id"]))["conversion"]
    assert result["treatment"]["converted"] == 1 and result["control"]["converted"] == 0
    assert result["lift"] is None  # the control rate is 0: no ratio to speak of


async def test_the_window_comes_from_the_config(start_server: Any, db: asyncpg.Connection
                                                ) -> None:
    server = await start_server(campaigns={"conversion_window_days": 30})
    async with Api(server.url, ADMIN_KEY) as api:
        store = await api.store(external_id="A")
        offer = await api.offer(store_ids=[store["id"]])
        await decide(db, offer["id"], "t1", "queued")
        await import_transactions(api, [("t1", "A", T0 + timedelta(days=20))])
        conversion = (await stats(api, offer["id"]))["conversion"]
    assert conversion["window_days"] == 30 and conversion["treatment"]["converted"] == 1


async def test_conversions_count_whenever_the_store_came_to_be(api: Api,
                                                              db: asyncpg.Connection) -> None:
    """Transactions imported before their store existed count once it is created, edited
    to their external id, or deleted and created again (a new store id) through the API."""
    day = timedelta(days=1)
    await import_transactions(api, [
        ("t1", "NEW", T0 + day), ("c1", "NEW", T0 + day),
        ("t2", "RENAMED", T0 + day), ("c2", "RENAMED", T0 + day),
    ])

    async def lift_of(store: dict[str, Any], treated: str, held: str) -> dict[str, Any]:
        offer = await api.offer(store_ids=[store["id"]])
        await decide(db, offer["id"], treated, "queued")
        await decide(db, offer["id"], held, "control")
        await decide(db, offer["id"], f"{held}-x", "control")
        return (await stats(api, offer["id"]))["conversion"]

    # Created after its transactions.
    created = await api.store(external_id="NEW")
    first = await lift_of(created, "t1", "c1")
    assert (first["treatment"]["converted"], first["control"]["converted"]) == (1, 1)
    assert first["lift"] == 1.0  # 1/1 against 1/2

    # Edited to the external id its transactions name.
    renamed = await api.store(external_id="OLD")
    (await api.as_role("marketer", "PATCH", f"/v1/stores/{renamed['id']}",
                       json={"external_id": "RENAMED"})).ok(200)
    assert (await lift_of(renamed, "t2", "c2"))["lift"] == 1.0

    # Deleted and created again: a new store id, the same transactions.
    assert (await api.as_role("marketer", "DELETE", f"/v1/stores/{created['id']}")).status == 204
    again = await api.store(external_id="NEW")
    assert again["id"] != created["id"]
    second = await lift_of(again, "t1", "c1")
    assert (second["treatment"]["converted"], second["control"]["converted"]) == (1, 1)
    assert second["lift"] == 1.0


async def test_old_suppressed_decisions_are_pruned_and_the_stats_stay_as_they_were(
    start_server: Any, db: asyncpg.Connection, make_config: Any, database_url: str
) -> None:
    # The server's own retention round (run at its start, beside this test) keeps a year of
    # decisions, so only the round below, at 90 days, prunes what is inserted here.
    server = await start_server(privacy={"decision_retention_days": 365})
    async with Api(server.url, ADMIN_KEY) as api:
        await _pruned_and_unchanged(api, db, make_config, database_url)


async def _pruned_and_unchanged(api: Api, db: asyncpg.Connection, make_config: Any,
                                database_url: str) -> None:
    from geopush.store.database import create_pool
    from geopush.store.retention import retention_round

    offer = await api.offer(trigger="enter", store_ids=[(await api.store())["id"]])
    oid = offer["id"]
    old = datetime.now(UTC) - timedelta(days=100)
    for _ in range(3):
        await decide(db, oid, None, "suppressed", at=old, reason="cooldown")
    await decide(db, oid, None, "suppressed", at=old - timedelta(days=1), reason="quiet_hours")
    await decide(db, oid, "c1", "queued", at=old)             # a contact: kept
    await decide(db, oid, None, "suppressed", at=datetime.now(UTC), reason="cooldown")
    before = await stats(api, oid)
    daily_before = (await api.as_role("ops", "GET", f"/v1/offers/{oid}/stats/daily?days=366")
                    ).ok(200)
    pool = await create_pool(database_url, 2)
    try:
        async def a_round() -> Any:
            """a retention round ran (not skipped while the server's own one held the lock)"""
            done = await retention_round(
                pool, make_config(privacy={"decision_retention_days": 90}))
            return None if done.skipped else done

        done = await eventually(a_round)
    finally:
        await pool.close()
    assert done.decisions == 4
    assert await db.fetchval("SELECT count(*) FROM decisions") == 2
    after = await stats(api, oid)
    assert after == before
    assert after["triggered"] == 6 and after["suppressed"] == {"cooldown": 4, "quiet_hours": 1}
    daily_after = (await api.as_role("ops", "GET", f"/v1/offers/{oid}/stats/daily?days=366")
                   ).ok(200)
    assert daily_after == daily_before
