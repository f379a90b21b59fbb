"""Service quality (SPEC section 14): a device rates its visit; marketers and ops read the
gap and work the recovery cases.

A comment is stored for the store's staff and never logged; the case list shows no one's
identity, only the store, the scores' case and its timeline.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush import metrics
from geopush.api.auth import require_device
from geopush.api.body import field_error, path_id, query_int, read_model
from geopush.api.openapi import (
    BY_DEVICE,
    BY_STATS,
    PAGE,
    STORE_ID,
    documented,
    int_query,
    obj,
    page_of,
    text_queries,
)
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.api.schema import ABSENT, Chars, NonBlank, RequestBody, WholeIn
from geopush.service.cases import (
    LISTING as CASES,
)
from geopush.service.cases import (
    STATUSES,
    case_status,
    case_times,
    lock_device_row,
    parse_patch,
    patch_case,
    recovery_figures,
    refresh_recovered,
)
from geopush.service.feedback import parse_answer, record_answer
from geopush.service.gap import service_report
from geopush.service.recovery import is_low, open_case
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts_or_none

Score = Annotated[int, WholeIn(1, 5)]


class Scores(RequestBody):
    reliability: Score | None = None
    assurance: Score | None = None
    tangibles: Score | None = None
    empathy: Score | None = None
    responsiveness: Score | None = None


class FeedbackBody(RequestBody):
    store_id: Annotated[str, NonBlank(64)]
    overall: Score
    delivery_id: Annotated[str, NonBlank(64)] | None = None
    dimensions: Scores | None = None
    expectations: Scores | None = None
    comment: Annotated[str, Chars(1000)] | None = None


class CasePatch(RequestBody):
    status: Annotated[str, NonBlank(20)] = ABSENT
    resolution: Annotated[str, Chars(1000)] | None = None


_T = {"type": "string"}
_OPT_T = {"type": ["string", "null"]}
_NUM = {"type": ["number", "null"]}
FEEDBACK_CREATED = obj(("id",), id=_T, case_id=_OPT_T)
CASE = obj(("id", "store_id", "opened_at", "status", "recovered"), id=_T, store_id=_T,
           opened_at=_T, status={"enum": list(STATUSES)}, first_response_at=_OPT_T,
           resolved_at=_OPT_T, resolution=_OPT_T, recovered={"type": "boolean"},
           recovered_at=_OPT_T)
RECOVERY = obj(("cases",), cases={"type": "integer"}, open={"type": "integer"},
               first_response_p50_s=_NUM, first_response_p90_s=_NUM,
               resolved_within_sla=_NUM, recovered=_NUM, sla_s={"type": "integer"})
SERVICE = obj(("days", "stores", "recovery"), days={"type": "integer"}, recovery=RECOVERY,
              stores={"type": "array", "items": obj(
                  ("store_id", "responses", "overall", "dimensions", "recovery"),
                  store_id=_T, store_name=_OPT_T, responses={"type": "integer"},
                  overall=_NUM, recovery=RECOVERY,
                  dimensions={"type": "array", "items": obj(
                      ("dimension", "perception", "expectation", "gap", "n"),
                      dimension=_T, perception={"type": "number"},
                      expectation={"type": "number"}, gap={"type": "number"},
                      n={"type": "integer"})})})


def case_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["case_id"]),
        "store_id": str(row["store_id"]),
        "opened_at": format_ts_or_none(row["opened_at"]),
        "status": row["status"],
        "first_response_at": format_ts_or_none(row["first_response_at"]),
        "resolved_at": format_ts_or_none(row["resolved_at"]),
        "resolution": row["resolution"],
        "recovered": row["recovered_at"] is not None,
        "recovered_at": format_ts_or_none(row["recovered_at"]),
    }


def _store_filter(request: web.Request) -> UUID | None:
    raw = request.query.get("store_id")
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise field_error("store_id", "must be an id") from None


@documented("Rate the device's latest verified visit to a store", auth=BY_DEVICE,
            body=FeedbackBody, status=201, errors=(403, 409), response=FEEDBACK_CREATED)
async def post_feedback(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    body = await read_model(request, FeedbackBody)
    answer = parse_answer(body.model_dump(mode="json", exclude_none=True))
    rt = request.app[RUNTIME]
    now = rt.now()
    opened = None
    async with rt.pool.acquire() as conn, conn.transaction():
        device = await lock_device_row(conn, device_id)
        if device is None:
            raise field_error("device", "unknown device")
        recorded = await record_answer(conn, rt.config, device, answer, now)
        if is_low(rt.config, answer.overall):
            opened = await open_case(conn, rt.config, device, answer, recorded, now)
    metrics.FEEDBACK.labels(str(answer.overall)).inc()
    result: dict[str, Any] = {"id": str(recorded.response_id)}
    if opened is not None:
        metrics.CASES.labels("open").inc()
        opened.decisions.observe()
        result["case_id"] = str(opened.case_id)
    return web.json_response(result, status=201)


@documented("The service gap per store and dimension, worst first, with recovery figures",
            auth=BY_STATS, query=(int_query("days", 1, 365), STORE_ID), response=SERVICE)
async def get_service(request: web.Request) -> web.Response:
    days = query_int(request, "days", 30, 1, 365)
    store_id = _store_filter(request)
    rt = request.app[RUNTIME]
    fb = rt.config.feedback
    now = rt.now()
    async with rt.pool.acquire() as conn:
        metrics.CASES.labels("recovered").inc(
            await refresh_recovered(conn, fb.recovery_window_days, now))
        stores = await service_report(conn, days=days, store_id=store_id,
                                      standard=fb.standard, sla_s=fb.recovery_sla_s, now=now)
        cases = await case_times(conn, now, days, store_id)
    return web.json_response({"days": days, "stores": stores,
                              "recovery": recovery_figures(list(cases), fb.recovery_sla_s)})


@documented("List recovery cases, newest first", auth=BY_STATS,
            query=(*PAGE, STORE_ID, *text_queries("status")), response=page_of(CASE))
async def list_cases(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise field_error("status", f"must be one of {', '.join(STATUSES)}")
    store_id = _store_filter(request)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        metrics.CASES.labels("recovered").inc(await refresh_recovered(
            conn, rt.config.feedback.recovery_window_days, rt.now()))
        rows = await fetch_page(conn, CASES, limit, cursor,
                                {"status": status, "store_id": store_id})
    return web.json_response(page([case_json(r) for r in rows], rows, limit, "case_id"))


@documented("Record the staff's response to a case", auth=BY_STATS, body=CasePatch,
            response=CASE)
async def patch_case_route(request: web.Request) -> web.Response:
    case_id = path_id(request, "case_id", "case")
    body = await read_model(request, CasePatch)
    status, has_resolution, resolution = parse_patch(body.given())
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        before = await case_status(conn, case_id)
        row = await patch_case(conn, case_id, status, has_resolution, resolution, rt.now())
    if status is not None and status != before:
        metrics.CASES.labels(status).inc()
    return web.json_response(case_json(row))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/feedback", post_feedback),
        web.get("/v1/service", get_service),
        web.get("/v1/cases", list_cases),
        web.patch("/v1/cases/{case_id}", patch_case_route),
    ]
