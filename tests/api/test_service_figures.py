"""GET /v1/service against the same figures computed here, independently, from the raw
answers and cases (SPEC section 14)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest

from tests.api_client import Api
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import sections
from tests.service_scenario import rated_store, visit

DIMS = ["reliability", "assurance", "tangibles", "empathy", "responsiveness"]
STANDARD = 4.0
SLA_S = 3600


def expected_gap(answers: list[asyncpg.Record]) -> dict[str, dict[str, Any]]:
    out = {}
    for dim in DIMS:
        scored = [a for a in answers if dim in a["dimensions"]]
        if not scored:
            continue
        p = float(np.mean([a["dimensions"][dim] for a in scored]))
        e = float(np.mean([a["expectations"].get(dim, STANDARD) for a in scored]))
        out[dim] = {"perception": p, "expectation": e, "gap": p - e, "n": len(scored)}
    return out


def expected_recovery(cases: list[dict[str, Any]]) -> dict[str, Any]:
    waits = [(c["first_response_at"] - c["opened_at"]).total_seconds() for c in cases
             if c["first_response_at"] is not None]
    n = len(cases)
    return {
        "cases": n,
        "first_response_p50_s": float(np.percentile(waits, 50)) if waits else None,
        "first_response_p90_s": float(np.percentile(waits, 90)) if waits else None,
        "resolved_within_sla": (sum(1 for c in cases if c["resolved_at"] is not None and
                                    (c["resolved_at"] - c["opened_at"]).total_seconds()
                                    <= SLA_S) / n) if n else None,
        "recovered": (sum(1 for c in cases if c["came_back"]) / n) if n else None,
    }


@pytest.mark.timeout(240)
async def test_service_figures_match_an_independent_computation(
    start_server: Callable[..., Any], db: asyncpg.Connection,
) -> None:
    rng = random.Random(14)
    server = await start_server(**sections(geo={"future_skew_s": 600},
                                           feedback={"recovery_threshold": 2}))
    async with Api(server.url, ADMIN_KEY) as api:
        shops = [await rated_store(api, north_km=i * 3) for i in range(2)]
        start = datetime.now(UTC) - timedelta(hours=3)
        phones = []
        for i in range(10):
            shop = shops[i % 2]
            phone = await api.device(unique_token("fig"))
            phones.append((phone, shop))
            await visit(api, shop, phone, start + timedelta(minutes=i))
            body: dict[str, Any] = {"store_id": shop.store["id"],
                                    "overall": 1 + (i * 3) % 5 if i % 3 else 1}
            dims = rng.sample(DIMS, rng.randint(1, 5))
            body["dimensions"] = {d: rng.randint(1, 5) for d in dims}
            if rng.random() < 0.6:
                body["expectations"] = {d: rng.randint(1, 5)
                                        for d in rng.sample(dims, rng.randint(1, len(dims)))}
            (await api.call("POST", "/v1/feedback", key=phone.token, json=body)).ok(201)
        cases = (await api.as_role("ops", "GET", "/v1/cases?limit=100")).ok(200)["items"]
        assert len(cases) >= 4
        # Staff answer some cases, some within the SLA, some late; history is set on the
        # rows to spread the times.
        for k, case in enumerate(cases):
            if k % 4 == 3:
                continue  # never answered
            status = "resolved" if k % 2 == 0 else "contacted"
            (await api.as_role("ops", "PATCH", f"/v1/cases/{case['id']}",
                               json={"status": status})).ok(200)
            await db.execute(
                "UPDATE service_cases SET opened_at = opened_at - make_interval(secs => $2),"
                " resolved_at = resolved_at + make_interval(secs => $3) WHERE case_id = $1",
                case["id"], 60.0 * (k + 1) ** 2, 1200.0 * k)
        # Two of the unhappy customers come back.
        back = {c["id"] for c in cases[:2]}
        for phone, shop in phones:
            device_case = await db.fetchval(
                "SELECT case_id::text FROM service_cases WHERE device_id = $1", phone.device_id)
            if device_case in back:
                await visit(api, shop, phone, datetime.now(UTC) + timedelta(seconds=1))

        got = (await api.as_role("marketer", "GET", "/v1/service?days=30")).ok(200)

    answers = await db.fetch("SELECT store_id::text AS store_id, overall, dimensions,"
                             " expectations FROM feedback_responses")
    raw_cases = [dict(r) for r in await db.fetch(
        "SELECT store_id::text AS store_id, device_id, opened_at, first_response_at,"
        " resolved_at FROM service_cases")]
    for c in raw_cases:
        c["came_back"] = await db.fetchval(
            "SELECT exists(SELECT 1 FROM events WHERE device_id = $1 AND type = 'dwell'"
            " AND ts > $2 AND ts <= $2 + interval '30 days')", c["device_id"], c["opened_at"])
    assert sum(c["came_back"] for c in raw_cases) == 2

    assert {s["store_id"] for s in got["stores"]} == {s.store["id"] for s in shops}
    for store in got["stores"]:
        mine = [a for a in answers if a["store_id"] == store["store_id"]]
        assert store["responses"] == len(mine)
        assert store["overall"] == pytest.approx(np.mean([a["overall"] for a in mine]),
                                                 abs=1e-4)
        want = expected_gap(mine)
        assert [d["dimension"] for d in store["dimensions"]] == sorted(
            want, key=lambda d: (round(want[d]["gap"], 4), d))
        for d in store["dimensions"]:
            w = want[d["dimension"]]
            assert d["n"] == w["n"]
            for key in ("perception", "expectation", "gap"):
                assert d[key] == pytest.approx(w[key], abs=1e-4)
        rec = expected_recovery([c for c in raw_cases if c["store_id"] == store["store_id"]])
        for key, value in rec.items():
            assert store["recovery"][key] == pytest.approx(value), key
    worst = [s["dimensions"][0]["gap"] for s in got["stores"]]
    assert worst == sorted(worst)
    overall = expected_recovery(raw_cases)
    for key, value in overall.items():
        assert got["recovery"][key] == pytest.approx(value), key
