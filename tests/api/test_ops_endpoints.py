"""Health, readiness, metrics and error shapes, as ops and monitoring see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api_client import Api, metric_value, walk
from tests.conftest import unique_token

SPEC_METRICS = (
    "geopush_pings_total", "geopush_events_total", "geopush_decisions_total",
    "geopush_deliveries_total", "geopush_outbox_depth", "geopush_event_to_send_seconds",
    "geopush_ingest_seconds", "geopush_fcm_request_seconds", "geopush_geofences_loaded",
)


async def test_health_ready_and_every_spec_metric(api: Api) -> None:
    assert (await api.call("GET", "/healthz")).ok(200) == {"status": "ok"}
    ready = (await api.call("GET", "/readyz")).ok(200)
    assert ready["checks"] == {"database": "ok", "migrations": "ok", "geofence_index": "ok"}
    reply = await api.call("GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    before = reply.body
    # Every SPEC metric is there from the first scrape (counters at their usual series).
    for name in SPEC_METRICS:
        assert f"\n{name}" in before or before.startswith(name), name

    fence = await api.circle(1.30, 103.85, 100)
    await api.offer(geofence_ids=[fence["id"]])
    dev = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(minutes=1)
    (await api.pings(dev, walk(1.30, 103.85, -300, 0, 4, start))).ok(202)
    after = (await api.call("GET", "/metrics")).body
    for name, labels, grew in (
        ("geopush_pings_total", {"result": "accepted", "reason": ""}, 4),
        ("geopush_events_total", {"type": "enter"}, 1),
        ("geopush_decisions_total", {"outcome": "queued", "reason": ""}, 1),
        ("geopush_ingest_seconds_count", {}, 1),
    ):
        grown = metric_value(after, name, **labels) - metric_value(before, name, **labels)
        assert grown == grew, name
    assert metric_value(after, "geopush_geofences_loaded") >= 1


async def test_errors_are_json_everywhere(api: Api) -> None:
    for method, path, status in (("GET", "/v1/nothing", 404), ("DELETE", "/v1/keys", 405),
                                 ("GET", "/v1/stores", 401)):
        reply = await api.call(method, path)
        assert reply.status == status
        assert set(reply.body["error"]) == {"code", "message", "details"}
    bad = await api.call("POST", "/v1/keys", key=api.admin_key, json={"role": "root"})
    assert bad.status == 400 and bad.body["error"]["details"][0]["field"] == "role"
