"""Basket analysis through the real server: transactions with lines in, rules, cross-sell
audiences, up-sell figures and `recommended` offers out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.api.test_crm_imports import post_csv
from tests.api_client import Api, emulator_messages, iso
from tests.conftest import unique_token
from tests.delivery_scenario import finished_delivery, open_shop, sender_idle, walk_in
from tests.eventually import eventually

HEADER = "transaction_id,line,customer_id,store_external_id,ts,amount,category,product\n"
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
OLD = RECENT - timedelta(days=120)

# 20 customers bought a computer with a printer; 5 a computer alone (the cross-sell
# audience of computer → printer); 40 one grocery item each (no rule among them).
PAIRS = [f"P{i:02d}" for i in range(20)]
LONERS = [f"A{i}" for i in range(5)]
GROCERS = [f"N{i:02d}" for i in range(40)]


def _transactions() -> str:
    t, old = iso(RECENT), iso(OLD)
    rows = []
    for i, c in enumerate(PAIRS):
        rows += [f"TP{i},1,{c},,{t},900,computer,laptop {i % 2}",
                 f"TP{i},2,{c},,{t},100,printer,inkjet"]
    for i, c in enumerate(LONERS):
        rows.append(f"TA{i},1,{c},,{t},800,computer,laptop 0")
        if i < 2:  # two of them are older customers too: FRAT puts them elsewhere
            rows += [f"TA{i}-old,1,{c},,{old},5,bread,", f"TA{i}-old2,1,{c},,{t},5,milk,"]
    groceries = ("bread", "milk", "coffee", "tea")
    rows += [f"TN{i},1,{c},,{t},3,{groceries[i % 4]}," for i, c in enumerate(GROCERS)]
    return HEADER + "\n".join(rows) + "\n"


async def _import(api: Api) -> dict[str, Any]:
    reply = (await post_csv(api, "transactions", _transactions())).ok(200)
    assert reply["error_count"] == 0, reply["errors"]
    return reply


async def _rules_ready(api: Api) -> dict[str, Any]:
    async def computed() -> dict[str, Any] | None:
        body = (await api.as_role("marketer", "GET", "/v1/insights/cross-sell")).ok(200)
        return body if body["computed_at"] else None

    return await eventually(computed, within=60, every=0.2)


def _rule(rules: list[dict[str, Any]], antecedent: list[str], consequent: list[str]
          ) -> dict[str, Any]:
    found = [r for r in rules if r["antecedent"] == antecedent
             and r["consequent"] == consequent]
    assert len(found) == 1, rules
    return found[0]


async def test_planted_rule_audience_and_recommended_offer(gp: Api, emulator,
                                                           db: asyncpg.Connection) -> None:
    api = gp
    imported = await _import(api)
    assert imported["inserted"] == 20 * 2 + 5 + 4 + 40
    # The import alone brings fresh rules: the recompute runs in the background after it.
    cross = await _rules_ready(api)
    assert cross["baskets"] == 20 + 5 + 4 + 40

    basket = (await api.as_role("marketer", "GET", "/v1/insights/basket")).ok(200)
    assert basket["baskets"] == 69
    rule = _rule(basket["rules"], ["computer"], ["printer"])
    assert rule["count"] == 20
    assert abs(rule["support"] - 20 / 69) < 1e-12
    assert abs(rule["confidence"] - 20 / 25) < 1e-12
    assert abs(rule["lift"] - (20 / 25) / (20 / 69)) < 1e-12
    lifts = [r["lift"] for r in basket["rules"]]
    assert lifts == sorted(lifts, reverse=True)
    assert {r["consequent"][0] for r in basket["rules"]} <= {"computer", "printer", "bread",
                                                              "milk"}

    products = (await api.as_role("marketer", "GET",
                                  "/v1/insights/basket?level=product&min_support=0.05")).ok(200)
    assert products["baskets"] == 25  # only the computer baskets name products
    inkjet = _rule(products["rules"], ["laptop 1"], ["inkjet"])
    assert inkjet["count"] == 10

    # The cross-sell audience: exactly the five who bought a computer and no printer,
    # counted per FRAT segment as their profiles show it.
    sell = _rule(cross["rules"], ["computer"], ["printer"])
    profiles = {c: (await api.as_role("marketer", "GET", f"/v1/customers/{c}")).ok(200)
                for c in LONERS}
    expected: dict[str, int] = {}
    for p in profiles.values():
        expected[p["segment"]] = expected.get(p["segment"], 0) + 1
    assert sell["audience"]["customers"] == 5
    assert {k: v for k, v in sell["audience"]["segments"].items() if v} == expected
    assert sell["offer"] == {"category": "printer",
                             "audience": {"bought_any": ["computer"],
                                          "not_bought": ["printer"]}}
    printer_to_computer = _rule(cross["rules"], ["printer"], ["computer"])
    assert printer_to_computer["audience"]["customers"] == 0

    # Recommended categories: the loners get printer; who has both, or groceries, nothing.
    assert all(p["recommended_categories"] == ["printer"] for p in profiles.values())
    pair = (await api.as_role("marketer", "GET", "/v1/customers/P00")).ok(200)
    assert pair["recommended_categories"] == []

    # A `recommended` offer reaches exactly the customers it names.
    shop = await open_shop(api, category="printer", audience={"recommended": True})
    devices = {c: await api.device(unique_token(c), customer_id=c)
               for c in ("A0", "A3", "P00", "N00")}
    anonymous = await api.device(unique_token("anon"))
    for device in [*devices.values(), anonymous]:
        await walk_in(api, shop, device)
    for c in ("A0", "A3"):
        assert (await finished_delivery(api, devices[c], within=10))["status"] == "sent"
    rows = await db.fetch("SELECT customer_id, outcome, reason FROM decisions"
                          " WHERE offer_id = $1", shop.offer["id"])
    assert sorted((r["customer_id"] or "", r["outcome"], r["reason"] or "") for r in rows) == [
        ("", "suppressed", "audience_mismatch"), ("A0", "queued", ""), ("A3", "queued", ""),
        ("N00", "suppressed", "audience_mismatch"), ("P00", "suppressed", "audience_mismatch"),
    ]
    await sender_idle(db)
    for c in ("P00", "N00"):
        assert await emulator_messages(emulator.base_url, devices[c].fcm_token) == []
    assert await emulator_messages(emulator.base_url, anonymous.fcm_token) == []


async def test_upsell_average_baskets_per_segment(api: Api) -> None:
    await _import(api)
    body = (await api.as_role("marketer", "GET", "/v1/insights/upsell")).ok(200)
    profiles = {}
    for c in PAIRS:
        profiles[c] = (await api.as_role("marketer", "GET", f"/v1/customers/{c}")).ok(200)
    segment = profiles["P00"]["segment"]
    assert all(p["segment"] == segment for p in profiles.values())
    printer = next(c for c in body["categories"] if c["category"] == "printer")
    figures = printer["segments"][segment]
    # Every printer basket is a 900 + 100 basket of its own customer.
    assert figures == {"baskets": 20, "customers": 20, "avg_basket": 1000.0,
                       "baskets_per_customer": 1.0, "avg_category_amount": 100.0}
    assert set(body["segments"]) >= {segment}
    assert "good_to_best" in body


async def test_recompute_on_demand_and_bad_queries(api: Api, db: asyncpg.Connection) -> None:
    await _import(api)
    summary = (await api.as_role("marketer", "POST", "/v1/insights/recompute")).ok(200)
    assert summary["baskets"] == 69 and summary["rules"] >= 2
    assert summary["customers_with_recommendations"] == 5
    # Erasing a customer erases their recommendations with the rest of their profile.
    (await api.as_role("marketer", "DELETE", "/v1/customers/A4")).ok(204)
    assert await db.fetchval("SELECT count(*) FROM customer_recommendations"
                             " WHERE customer_id = 'A4'") == 0
    assert await db.fetchval("SELECT count(*) FROM customer_recommendations") == 4
    for query, field in [("level=aisle", "level"), ("min_support=0", "min_support"),
                         ("min_support=abc", "min_support"), ("min_confidence=1.5",
                                                              "min_confidence"),
                         ("min_lift=-1", "min_lift"), ("max_len=1", "max_len"),
                         ("max_len=99", "max_len"), ("store_id=nope", "store_id"),
                         ("since=yesterday", "since"), ("since=2024-01-01T00:00:00", "since")]:
        reply = await api.as_role("marketer", "GET", f"/v1/insights/basket?{query}")
        assert reply.status == 400, (query, reply.body)
        assert reply.body["error"]["details"][0]["field"] == field
    assert (await api.as_role("marketer", "GET", "/v1/insights/cross-sell?limit=0")).status == 400
    assert (await api.as_role("app", "GET", "/v1/insights/basket")).status == 403
    assert (await api.call("GET", "/v1/insights/upsell")).status == 401
    # A store's own baskets: none here, so no rules.
    store = await api.store()
    mined = (await api.as_role("marketer", "GET",
                               f"/v1/insights/cross-sell?store_id={store['id']}")).ok(200)
    assert mined["baskets"] == 0 and mined["rules"] == []


async def test_recommended_audience_needs_the_offers_category(api: Api) -> None:
    shop = await open_shop(api)
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "geofence_ids": [shop.fence["id"]], "message": shop.offer["message"],
        "audience": {"recommended": True}})
    assert reply.status in (400, 422), reply.body
    assert "category" in reply.body["error"]["message"]
    ok = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "geofence_ids": [shop.fence["id"]], "message": shop.offer["message"],
        "category": "printer", "audience": {"recommended": True, "bought_all": ["a", "b"]}})
    assert ok.ok(201)["audience"] == {"bought_any": [], "not_bought": [], "bought_all": ["a", "b"],
                                      "recommended": True}
    patched = await api.as_role("marketer", "PATCH", f"/v1/offers/{ok.body['id']}",
                                json={"category": None})
    assert patched.status in (400, 422), patched.body


async def test_cli_recompute_mines_and_writes_recommendations(
    database_url: str, db: asyncpg.Connection, tmp_path
) -> None:
    from tests.api.test_crm_imports import run_cli

    path = tmp_path / "transactions.csv"
    path.write_text(_transactions(), encoding="utf-8")
    rc, out, err = await run_cli(database_url, tmp_path, "import", "transactions", str(path))
    assert rc == 0, err
    await db.execute("DELETE FROM customer_recommendations; DELETE FROM basket_runs")
    rc, out, err = await run_cli(database_url, tmp_path, "insights", "recompute")
    assert rc == 0, err
    import json

    summary = json.loads(out)
    assert summary["baskets"] == 69 and summary["customers_with_recommendations"] == 5
    rows = await db.fetch("SELECT customer_id, categories FROM customer_recommendations"
                          " ORDER BY customer_id")
    assert [(r["customer_id"], list(r["categories"])) for r in rows] == [
        (c, ["printer"]) for c in LONERS]
    assert await db.fetchval("SELECT count(*) FROM basket_runs") == 1


async def test_too_loose_a_query_is_refused_not_mined_for_hours(start_server: Any) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(insights={"max_itemsets": 5})
    async with Api(server.url, ADMIN_KEY) as api:
        await _import(api)
        reply = await api.as_role("marketer", "GET", "/v1/insights/basket?min_support=0.001")
        assert reply.status == 422, reply.body
        assert reply.body["error"]["code"] == "too_many_itemsets"
        assert "min_support" in reply.body["error"]["message"]


async def test_the_daily_run_mines_the_rules(start_server: Any,
                                             db: asyncpg.Connection) -> None:
    """The daily recompute was due this hour and last ran two days ago: a starting server
    runs it, segments then rules, with no import or request to prompt it."""
    t = RECENT
    rows = [(f"TP{i}", ln, c, t, 1, cat) for i, c in enumerate(PAIRS)
            for ln, cat in ((1, "computer"), (2, "printer"))]
    rows += [(f"TA{i}", 1, c, t, 1, "computer") for i, c in enumerate(LONERS)]
    await db.copy_records_to_table("transactions", records=rows, columns=[
        "transaction_id", "line", "customer_id", "ts", "amount", "category"])
    await db.execute("INSERT INTO customers (customer_id) SELECT DISTINCT customer_id"
                     " FROM transactions")
    await db.execute("INSERT INTO segment_runs (computed_at, counts) VALUES ($1, '{}')",
                     datetime.now(UTC) - timedelta(days=2))
    await start_server(segments={"daily_recompute_hour_utc": datetime.now(UTC).hour})
    await eventually(lambda: db.fetchval("SELECT count(*) FROM basket_runs"), 30, 0.1)
    assert await db.fetchval("SELECT baskets FROM basket_runs") == 25
    rows = await db.fetch("SELECT customer_id, categories FROM customer_recommendations")
    assert sorted((r["customer_id"], list(r["categories"])) for r in rows) == [
        (c, ["printer"]) for c in LONERS]
