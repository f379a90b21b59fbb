"""`GET /v1/insights/value` (SPEC section 15) on planted customers and transactions,
computed again here from the definitions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from tests.api_client import Api, iso

CSV = {"Content-Type": "text/csv"}
MONTH = timedelta(days=30.44)
NOW = datetime.now(UTC).replace(microsecond=0)
LOOKBACK_MONTHS = 365 / 30.44
CUSTOMERS = {"V1": NOW - 30 * MONTH, "V2": None, "V3": NOW - 2 * MONTH}
# (customer, store, months ago, amount); V4 has no profile; one line is past the lookback.
PLANTED = [
    ("V1", "A", 1, 10.0), ("V1", "A", 2, 30.0), ("V1", "B", 3, 50.0),
    ("V2", "A", 5, 20.0), ("V2", "A", 0.5, 20.0),
    ("V3", "B", 1, 100.0),
    ("V4", "B", 0.2, 40.0), ("V4", "B", 14, 999.0),
]


def reference(group_of: dict[tuple[str, str], str]) -> dict[str, dict[str, float]]:
    per: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for customer, store, ago, amount in PLANTED:
        ts = NOW - ago * MONTH
        if ts < NOW - timedelta(days=365):
            continue
        per[(group_of[(customer, store)], customer)].append((ts, amount))
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (group, customer), lines in per.items():
        start = min(ts for ts, _ in lines)
        created = CUSTOMERS.get(customer)
        if created is not None:
            start = min(start, created)
        months = max((NOW - start) / MONTH, 1.0)
        g = groups[group]
        g["months"].append(months)
        g["frequency"].append(len(lines) / min(months, max(LOOKBACK_MONTHS, 1.0)))
        g["amounts"].extend(a for _, a in lines)
    out = {}
    for group, g in groups.items():
        frequency = sum(g["frequency"]) / len(g["frequency"])
        basket = sum(g["amounts"]) / len(g["amounts"])
        months = sum(g["months"]) / len(g["months"])
        out[group] = {"customers": len(g["months"]), "frequency_per_month": frequency,
                      "average_basket": basket, "relationship_months": months,
                      "value": frequency * basket * months}
    return out


async def test_value_per_store_and_per_segment(api: Api) -> None:
    stores = {x: await api.store(external_id=x, name=f"Store {x}") for x in ("A", "B")}
    body = "customer_id,first_name,language,created_at\n" + "".join(
        f"{c},N,en,{'' if t is None else iso(t)}\n" for c, t in CUSTOMERS.items())
    (await api.as_role("marketer", "POST", "/v1/customers/import", data=body.encode(),
                       headers=CSV)).ok(200)
    body = "transaction_id,customer_id,store_external_id,ts,amount,category\n" + "".join(
        f"W{i},{c},{s},{iso(NOW - ago * MONTH)},{a},food\n"
        for i, (c, s, ago, a) in enumerate(PLANTED))
    (await api.as_role("marketer", "POST", "/v1/transactions/import", data=body.encode(),
                       headers=CSV)).ok(200)

    got = (await api.as_role("marketer", "GET", "/v1/insights/value?by=store")).ok(200)
    want = reference({(c, s): stores[s]["id"] for c, s, _, _ in PLANTED})
    assert {i["group"] for i in got["items"]} == set(want)
    for item in got["items"]:
        assert item["name"] == {v["id"]: v["name"] for v in stores.values()}[item["group"]]
        for key, value in want[item["group"]].items():
            assert item[key] == pytest.approx(value, rel=1e-4), (item["group"], key)

    segment = {}
    for c in ("V1", "V2", "V3", "V4"):  # V4 may have a profile from its transactions alone
        reply = await api.as_role("marketer", "GET", f"/v1/customers/{c}")
        segment[c] = reply.body["segment"] if reply.status == 200 else "unknown"
    got = (await api.as_role("marketer", "GET", "/v1/insights/value")).ok(200)
    assert got["by"] == "segment"
    want = reference({(c, s): segment[c] for c, s, _, _ in PLANTED})
    assert {i["group"] for i in got["items"]} == set(want)
    for item in got["items"]:
        for key, value in want[item["group"]].items():
            assert item[key] == pytest.approx(value, rel=1e-4), (item["group"], key)

    bad = await api.as_role("marketer", "GET", "/v1/insights/value?by=planet")
    assert bad.status == 400 and bad.body["error"]["code"] == "invalid"
    assert (await api.as_role("app", "GET", "/v1/insights/value")).status == 403
