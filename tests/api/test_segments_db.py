"""FRAT segments end to end: a population whose segments are known by construction,
imported through the API, recomputed in PostgreSQL, read back per segment and per customer.

The population (44 customers; days are before now; 37 have a transaction in the 365-day
lookback, so F and A scores rank among those 37):

| group        | n  | transactions                          | segment, and why                    |
|--------------|----|---------------------------------------|-------------------------------------|
| best         | 10 | 12 × 100, days 200..5, 2 categories  | F=12, A=1200: top 10 of 37 → F, A 4  |
| cheap_loyal  | 3  | 12 × 1, days 200..5                   | F 4 but A=12 (only 4 below) → good   |
| good         | 10 | 2 × 20, days 200 and 5               | low F → good                         |
| at_risk      | 5  | 2 × 20, days 300 and 90              | last > 60 days → at_risk             |
| lapsed       | 5  | 1 × 15, day 200                       | last > 180 days → inactive           |
| gone         | 3  | 1 × 15, day 400 (outside lookback)    | none in lookback → inactive          |
| newcomer     | 4  | 1 × 10, day 10                        | first ≤ 30 days → new                |
| signed_up    | 2  | none, created 5 days ago              | new                                  |
| dormant      | 2  | none, created 100 days ago            | inactive                             |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.api_client import Api, iso

NOW = datetime.now(UTC).replace(microsecond=0)
CSV = {"Content-Type": "text/csv"}


def day(n: float) -> datetime:
    # An hour earlier than n whole days, so recency_days is exactly n however long the
    # test takes to reach the recompute.
    return NOW - timedelta(days=n, hours=1)


GROUPS: dict[str, tuple[int, list[tuple[float, int, str]]]] = {
    # name: (customers, [(days ago, amount, category), ...])
    "best": (10, [(200 - i * 17.7, 100, "coffee" if i % 2 else "food") for i in range(12)]),
    "cheap_loyal": (3, [(200 - i * 17.7, 1, "coffee") for i in range(12)]),
    "good": (10, [(200, 20, "coffee"), (5, 20, "coffee")]),
    "at_risk": (5, [(300, 20, "tea"), (90, 20, "tea")]),
    "lapsed": (5, [(200, 15, "tea")]),
    "gone": (3, [(400, 15, "tea")]),
    "newcomer": (4, [(10, 10, "juice")]),
    "signed_up": (2, []),
    "dormant": (2, []),
}
EXPECTED_SEGMENT = {"best": "best", "cheap_loyal": "good", "good": "good",
                    "at_risk": "at_risk", "lapsed": "inactive", "gone": "inactive",
                    "newcomer": "new", "signed_up": "new", "dormant": "inactive"}


def population() -> tuple[str, str]:
    customers = ["customer_id,first_name,language,created_at"]
    transactions = ["transaction_id,customer_id,store_external_id,ts,amount,category"]
    created = {"signed_up": day(5).date().isoformat(), "dormant": iso(day(100))}
    for group, (n, purchases) in GROUPS.items():
        for k in range(n):
            cid = f"{group}-{k}"
            customers.append(f"{cid},{group.title()} {k},en,"
                             f"{created.get(group, '2020-01-01')}")
            for j, (ago, amount, category) in enumerate(purchases):
                transactions.append(f"{cid}-t{j},{cid},,{iso(day(ago))},{amount},{category}")
    return "\n".join(customers) + "\n", "\n".join(transactions) + "\n"


def expected_counts() -> dict[str, int]:
    counts = dict.fromkeys(("new", "good", "best", "at_risk", "inactive"), 0)
    for group, (n, _) in GROUPS.items():
        counts[EXPECTED_SEGMENT[group]] += n
    return counts


async def load(api: Api) -> dict[str, Any]:
    customers, transactions = population()
    (await api.as_role("marketer", "POST", "/v1/customers/import", data=customers.encode(),
                       headers=CSV)).ok(200)
    return (await api.as_role("marketer", "POST", "/v1/transactions/import",
                              data=transactions.encode(), headers=CSV)).ok(200)


async def profile(api: Api, customer_id: str) -> dict[str, Any]:
    return (await api.as_role("marketer", "GET", f"/v1/customers/{customer_id}")).ok(200)


async def test_segments_of_a_known_population(api: Api, db: asyncpg.Connection) -> None:
    assert expected_counts() == {"new": 6, "good": 13, "best": 10, "at_risk": 5,
                                 "inactive": 10}
    imported = await load(api)
    assert imported["error_count"] == 0 and imported["customers_created"] == 0
    assert imported["segments"]["segments"] == expected_counts()

    summary = (await api.as_role("marketer", "GET", "/v1/segments")).ok(200)
    assert summary["segments"] == expected_counts()
    assert datetime.fromisoformat(summary["computed_at"]) >= NOW

    by_customer = dict(await db.fetch("SELECT customer_id, segment FROM customers"))
    for customer_id, segment in by_customer.items():
        assert segment == EXPECTED_SEGMENT[customer_id.rsplit("-", 1)[0]], customer_id

    best = await profile(api, "best-3")
    assert (best["segment"], best["frequency"], best["amount"]) == ("best", 12, 1200.0)
    assert best["recency_days"] == 5 and best["types"] == 2
    assert best["categories"] == ["coffee", "food"]
    assert best["f"] >= 4 and best["a"] >= 4 and 1 <= best["r"] <= 5
    assert best["first_name"] == "Best 3" and best["language"] == "en"

    cheap = await profile(api, "cheap_loyal-0")
    assert cheap["segment"] == "good" and cheap["f"] >= 4 and cheap["a"] < 4

    at_risk = await profile(api, "at_risk-1")
    assert (at_risk["recency_days"], at_risk["frequency"], at_risk["amount"]) == (90, 2, 40.0)
    newcomer = await profile(api, "newcomer-0")
    assert newcomer["recency_days"] == 10
    # More recent never scores lower on R.
    assert at_risk["r"] <= newcomer["r"] <= best["r"] and at_risk["r"] < best["r"]

    # Outside the lookback nothing counts: no figures, no scores.
    gone = await profile(api, "gone-0")
    assert (gone["frequency"], gone["amount"], gone["types"]) == (0, 0.0, 0)
    assert gone["r"] is None and gone["f"] is None and gone["recency_days"] is None
    signed_up = await profile(api, "signed_up-1")
    assert signed_up["segment"] == "new" and signed_up["frequency"] == 0


async def test_recompute_on_demand_records_a_run(api: Api, db: asyncpg.Connection) -> None:
    before = (await api.as_role("marketer", "GET", "/v1/segments")).ok(200)
    assert before["computed_at"] is None and sum(before["segments"].values()) == 0
    await load(api)
    runs = await db.fetchval("SELECT count(*) FROM segment_runs")
    again = (await api.as_role("marketer", "POST", "/v1/segments/recompute")).ok(200)
    assert again["segments"] == expected_counts() and again["customers"] == 44
    assert await db.fetchval("SELECT count(*) FROM segment_runs") == runs + 1
    last = await db.fetchrow("SELECT * FROM segment_runs ORDER BY id DESC LIMIT 1")
    assert last["counts"] == expected_counts()
    assert last["computed_at"] == datetime.fromisoformat(again["computed_at"])
    assert (await api.as_role("ops", "POST", "/v1/segments/recompute")).status == 403


async def test_thresholds_come_from_the_config(start_server: Any) -> None:
    from tests.conftest import ADMIN_KEY

    # At 100 days, the 90-day customers are no longer at risk; with new_days = 5 the
    # 10-day newcomers are not new either (and, one purchase each, only good).
    server = await start_server(segments={"at_risk_days": 100, "new_days": 5})
    async with Api(server.url, ADMIN_KEY) as api:
        imported = await load(api)
    counts = imported["segments"]["segments"]
    assert counts == {"new": 0, "good": 13 + 5 + 4, "best": 10, "at_risk": 0,
                      "inactive": 10 + 2}
