"""A 100,000-line transactions import through the HTTP API, as a retailer's nightly export.

Background: 5,000 random customers buying over the last year. On top, a few customers whose
segment is known by construction, 400 repeated transaction ids and 100 broken lines. The
import streams, merges in batches and recomputes segments; the whole exchange takes a few
seconds here (see docs/BENCHMARKS.md for 1M lines).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.api_client import Api, iso

LINES = 100_000
NOW = datetime.now(UTC).replace(microsecond=0)


def ago(days: float) -> str:
    return iso(NOW - timedelta(days=days, hours=1))


def export() -> tuple[bytes, int, int]:
    """The CSV, how many lines repeat an earlier id, how many are broken."""
    rng = random.Random(20240301)
    lines = ["transaction_id,customer_id,store_external_id,ts,amount,category"]
    # Known by construction (see the assertions).
    lines += [f"W{i},whale,BJ-{i % 3},{ago(300 - i)},500.00,coffee" for i in range(300)]
    lines += [f"R{i},at-risk,BJ-1,{ago(300 - 57 * i)},30,tea" for i in range(5)]  # last: 72
    lines.append(f"L0,lapsed,,{ago(250)},30,tea")
    lines.append(f"N0,newbie,BJ-2,{ago(3)},4.50,juice")
    duplicates = broken = 0
    good = lines[1:]  # lines safe to repeat as duplicates
    while len(lines) <= LINES:
        i = len(lines)
        roll = rng.random()
        if roll < 0.004:
            duplicates += 1
            lines.append(rng.choice(good))  # a good line again
        elif roll < 0.005:
            broken += 1
            lines.append(f"B{i},c{i % 5000},BJ-1,{ago(1)},twelve,food")
        else:
            store = rng.choice(["", "BJ-0", "BJ-1", "BJ-2", "ELSEWHERE"])
            good.append(f"X{i},c{rng.randrange(5000)},{store},{ago(rng.uniform(0, 360))},"
                        f"{rng.uniform(1, 60):.2f},{rng.choice(['coffee', 'tea', 'food'])}")
            lines.append(good[-1])
    return ("\n".join(lines) + "\n").encode(), duplicates, broken


@pytest.mark.slow
async def test_a_100k_line_import_through_the_api(api: Api, db: asyncpg.Connection) -> None:
    for i in range(3):
        await api.store(external_id=f"BJ-{i}")
    body, duplicates, broken = export()
    reply = (await api.as_role("marketer", "POST", "/v1/transactions/import", data=body,
                               headers={"Content-Type": "text/csv"})).ok(200)

    assert reply["rows"] == LINES
    assert reply["error_count"] == broken
    assert all("amount" in e["reason"] for e in reply["errors"])
    assert reply["duplicates"] == duplicates
    assert reply["inserted"] == LINES - duplicates - broken
    assert await db.fetchval("SELECT count(*) FROM transactions") == reply["inserted"]
    assert await db.fetchval(
        "SELECT count(*) FROM transactions WHERE store_id IS NOT NULL AND"
        " store_external_id NOT LIKE 'BJ-%'") == 0

    segments = reply["segments"]
    assert segments["customers"] == 5000 + 4
    assert sum(segments["segments"].values()) == 5004
    summary = (await api.as_role("marketer", "GET", "/v1/segments")).ok(200)
    assert summary["segments"] == segments["segments"]

    async def segment_of(customer_id: str) -> str:
        return (await api.as_role("marketer", "GET",
                                  f"/v1/customers/{customer_id}")).ok(200)["segment"]

    assert await segment_of("whale") == "best"
    assert await segment_of("at-risk") == "at_risk"
    assert await segment_of("lapsed") == "inactive"
    assert await segment_of("newbie") == "new"
    whale = (await api.as_role("marketer", "GET", "/v1/customers/whale")).ok(200)
    assert (whale["frequency"], whale["amount"], whale["f"], whale["a"]) == (300, 150000.0, 5, 5)
