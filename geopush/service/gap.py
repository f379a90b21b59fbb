"""The service gap per store and dimension: perception minus expectation (SPEC section 14).

Perception is the mean score of a dimension; expectation the mean, over the same answers,
of the customer's own expectation for it where given, else the store standard `[feedback]
standard`. A negative gap is service below what customers expected; the worst comes first.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.service.cases import recovery_figures
from geopush.service.feedback import DIMENSIONS

_RESPONSES = """
SELECT r.store_id, s.name, r.overall, r.dimensions, r.expectations
FROM feedback_responses r LEFT JOIN stores s ON s.store_id = r.store_id
WHERE r.created_at >= $1 AND ($2::uuid IS NULL OR r.store_id = $2)
"""
_CASES = """
SELECT store_id, opened_at, status, first_response_at, resolved_at, recovered_at
FROM service_cases WHERE opened_at >= $1 AND ($2::uuid IS NULL OR store_id = $2)
"""


def _round(value: float) -> float:
    return round(value, 4)


async def service_report(conn: asyncpg.Connection, *, days: int, store_id: UUID | None,
                         standard: float, sla_s: int, now: datetime) -> list[dict[str, Any]]:
    since = now - timedelta(days=days)
    rows = await conn.fetch(_RESPONSES, since, store_id)
    cases = await conn.fetch(_CASES, since, store_id)
    by_store: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    names: dict[UUID, str | None] = {}
    for r in rows:
        by_store[r["store_id"]].append(r)
        names[r["store_id"]] = r["name"]
    cases_of: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for c in cases:
        cases_of[c["store_id"]].append(c)
    report: list[dict[str, Any]] = []
    for sid in set(by_store) | set(cases_of):
        answers = by_store.get(sid, [])
        dims = []
        for dim in DIMENSIONS:
            scored = [a for a in answers if dim in a["dimensions"]]
            if not scored:
                continue
            perception = sum(a["dimensions"][dim] for a in scored) / len(scored)
            expectation = sum(a["expectations"].get(dim, standard) for a in scored) / len(scored)
            dims.append({"dimension": dim, "perception": _round(perception),
                         "expectation": _round(expectation),
                         "gap": _round(perception - expectation), "n": len(scored)})
        dims.sort(key=lambda d: (d["gap"], d["dimension"]))
        report.append({
            "store_id": str(sid),
            "store_name": names.get(sid),
            "responses": len(answers),
            "overall": _round(sum(a["overall"] for a in answers) / len(answers))
            if answers else None,
            "dimensions": dims,
            "recovery": recovery_figures(cases_of.get(sid, []), sla_s),
        })
    report.sort(key=_worst_first)
    return report


def _worst_first(store: dict[str, Any]) -> tuple[float, str]:
    dims: list[dict[str, Any]] = store["dimensions"]
    return (dims[0]["gap"] if dims else float("inf"), store["store_id"])
