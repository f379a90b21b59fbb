"""The three levers (SPEC section 15) on planted data, computed again here independently:
treatment customers visit twice as often as control ones, and the stats must say so."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from tests.api.test_offer_stats import CSV, T0, TX_HEADER, decide, stats
from tests.api_client import Api, iso
from tests.conftest import unique_token

DAY = timedelta(days=1)
WINDOW = 7  # [campaigns] conversion_window_days, the default

# (customer, time, amount): treatment t1..t4 buy twice in the window and t5 never, control
# c1..c4 once and c5 only after the window (but a phone of c5 enters a store in it).
PLANTED = [
    *[(f"t{i}", T0 + DAY, 20.0) for i in range(1, 5)],
    *[(f"t{i}", T0 + 6 * DAY, 40.0) for i in range(1, 5)],
    *[(f"c{i}", T0 + 2 * DAY, 30.0) for i in range(1, 5)],
    ("c5", T0 + 9 * DAY, 500.0),
    ("t1", T0 - DAY, 999.0),  # before the first contact
]
GROUPS = {"treatment": [f"t{i}" for i in range(1, 6)],
          "control": [f"c{i}" for i in range(1, 6)]}
VISITED = {"c5"}

def reference(group: list[str]) -> dict[str, float | None]:
    inside = [(c, a) for c, ts, a in PLANTED
              if c in group and T0 <= ts <= T0 + timedelta(days=WINDOW)]
    buyers = {c for c, _ in inside}
    return {
        "visits_per_customer": len(inside) / len(group),
        "average_basket": sum(a for _, a in inside) / len(inside) if inside else None,
        "retained": len(buyers | (VISITED & set(group))) / len(group),
    }

async def test_levers_show_treatment_visiting_twice_as_often(api: Api,
                                                             db: asyncpg.Connection) -> None:
    store = await api.store(external_id="A")
    offer = await api.offer(store_ids=[store["id"]])
    for customer in GROUPS["treatment"]:
        await decide(db, offer["id"], customer, "queued")
    for customer in GROUPS["control"]:
        await decide(db, offer["id"], customer, "control", reason="control_group")
    body = TX_HEADER + "".join(f"L{i},{c},A,{iso(ts)},{a},coffee\n"
                               for i, (c, ts, a) in enumerate(PLANTED))
    (await api.as_role("marketer", "POST", "/v1/transactions/import", data=body.encode(),
                       headers=CSV)).ok(200)
    phone = await api.device(unique_token(), customer_id="c5")
    await db.execute("INSERT INTO events (event_id, device_id, geofence_id, type, ts)"
                     " VALUES ($1, $2, $3, 'enter', $4)", uuid.uuid4(),
                     uuid.UUID(phone.device_id), uuid.uuid4(), T0 + 3 * DAY)

    levers = (await stats(api, offer["id"]))["levers"]
    want = {g: reference(ids) for g, ids in GROUPS.items()}
    for group in ("treatment", "control"):
        got = levers[group]
        assert got["customers"] == 5
        for key, value in want[group].items():
            assert got[key] == value, (group, key)
    assert levers["ratio"]["visits_per_customer"] == 2.0
    assert levers["ratio"]["average_basket"] == want["treatment"]["average_basket"] / 30.0
    assert levers["ratio"]["retained"] == want["treatment"]["retained"] / 1.0
    assert want["treatment"]["retained"] == 0.8
    assert levers["window_days"] == WINDOW

async def test_levers_of_an_offer_nobody_got(api: Api) -> None:
    offer = await api.offer(store_ids=[(await api.store(external_id="B"))["id"]])
    levers = (await stats(api, offer["id"]))["levers"]
    assert levers["treatment"] == {"customers": 0, "visits_per_customer": None,
                                   "average_basket": None, "retained": None}
    assert levers["ratio"] == {"visits_per_customer": None, "average_basket": None,
                               "retained": None}
