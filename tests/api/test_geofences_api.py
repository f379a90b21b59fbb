"""Geofences and stores over HTTP: validation (422 with why), edits, visits closed silently."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.api_client import Api, offset_m, walk
from tests.conftest import unique_token

LAT, LON = 48.8566, 2.3522


def square(lon: float, lat: float, d: float = 0.001) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
         "self_intersection"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "too_few_points"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
         "unclosed_ring"),
        ({"type": "Polygon", "coordinates": [
            [[0.001 * (i % 2) + 10, 10 + i * 1e-5] for i in range(2000)]
            + [[9.99, 10.02], [9.99, 10.0], [10, 10]]]}, "too_many_vertices"),
        ({"type": "Circle", "center": [2.35, 48.85], "radius_m": 5}, "radius_out_of_bounds"),
        ({"type": "Circle", "center": [2.35, 48.85], "radius_m": 50_001},
         "radius_out_of_bounds"),
        ({"type": "Circle", "center": [200, 48.85], "radius_m": 100},
         "coordinates_out_of_range"),
        ({"type": "Polygon", "coordinates": [[[179.9, 0], [-179.9, 0], [-179.9, 1],
                                              [179.9, 1], [179.9, 0]]]},
         "crosses_antimeridian"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "unsupported_type"),
        ("circle please", "malformed"),
    ],
)
async def test_invalid_geometry_is_422_with_reason(api: Api, geometry: object, reason: str
                                                   ) -> None:
    reply = await api.as_role("marketer", "POST", "/v1/geofences",
                              json={"name": "bad", "geometry": geometry})
    assert reply.status == 422, reply.body
    assert reply.body["error"]["details"][0]["reason"] == reason
    assert reply.body["error"]["message"]


async def test_polygon_multipolygon_circle_area_and_get(api: Api) -> None:
    poly = (await api.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "p", "geometry": {"type": "Polygon", "coordinates": [square(LON, LAT)]},
    })).ok(201)
    multi = (await api.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "m", "geometry": {"type": "MultiPolygon", "coordinates": [
            [square(LON, LAT)], [square(LON + 0.01, LAT)]]},
    })).ok(201)
    assert 7000 < poly["area_m2"] < 9000  # 0.001° × 0.001° at 48.86° N ≈ 8,170 m²
    assert abs(multi["area_m2"] - 2 * poly["area_m2"]) / multi["area_m2"] < 0.01
    assert poly["dwell_s"] == 300 and poly["enabled"] is True
    got = (await api.as_role("marketer", "GET", f"/v1/geofences/{poly['id']}")).ok(200)
    assert got["geometry"]["type"] == "Polygon"
    assert (await api.as_role("marketer", "GET", f"/v1/geofences/{unique_token()}")
            ).status == 404


async def test_geofence_list_pagination(api: Api) -> None:
    ids = [(await api.circle(LAT, LON + i * 0.01, 50))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        path = "/v1/geofences?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.as_role("marketer", "GET", path)).ok(200)
        seen += [g["id"] for g in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def _enter(api: Api, fence_lat: float, fence_lon: float):
    dev = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(minutes=3)
    reply = (await api.pings(dev, walk(fence_lat, fence_lon, -300, 0, 4, start))).ok(202)
    assert [e["type"] for e in reply["events"]] == ["enter"]
    return dev, start


@pytest.mark.parametrize("change", ["disable", "delete", "reshape"])
async def test_disable_delete_reshape_close_visits_without_events(api: Api, db,
                                                                  change: str) -> None:
    fence = await api.circle(LAT, LON, 100)
    dev, start = await _enter(api, LAT, LON)
    path = f"/v1/geofences/{fence['id']}"
    if change == "disable":
        (await api.as_role("marketer", "PATCH", path, json={"enabled": False})).ok(200)
    elif change == "delete":
        assert (await api.as_role("marketer", "DELETE", path)).status == 204
    else:
        (await api.as_role("marketer", "PATCH", path, json={"geometry": {
            "type": "Circle", "center": [LON, LAT], "radius_m": 120}})).ok(200)
    assert await db.fetchval("SELECT count(*) FROM visits") == 0
    far = offset_m(LAT, LON, 2000, 0)
    reply = (await api.pings(dev, [(far[0], far[1], start + timedelta(minutes=2))])).ok(202)
    assert reply["events"] == []
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'exit'") == 0


async def test_rename_keeps_the_visit(api: Api, db) -> None:
    fence = await api.circle(LAT, LON, 100)
    await _enter(api, LAT, LON)
    (await api.as_role("marketer", "PATCH", f"/v1/geofences/{fence['id']}",
                       json={"name": "renamed", "dwell_s": 60})).ok(200)
    assert await db.fetchval("SELECT count(*) FROM visits") == 1


def _collection() -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a", "radius_m": 80,
                                           "store_external_id": "ST-1"},
         "geometry": {"type": "Point", "coordinates": [LON, LAT]}},
        {"type": "Feature", "properties": {"name": "no radius"},
         "geometry": {"type": "Point", "coordinates": [LON, LAT]}},
        {"type": "Feature", "properties": {"name": "poly"},
         "geometry": {"type": "Polygon", "coordinates": [square(LON, LAT)]}},
        {"type": "Feature", "properties": {"name": "open ring"},
         "geometry": {"type": "Polygon", "coordinates": [square(LON, LAT)[:-1]]}},
        {"type": "Feature", "properties": {"radius_m": 50, "store_external_id": "nope"},
         "geometry": {"type": "Point", "coordinates": [LON, LAT]}},
    ]}


async def test_import_feature_collection_with_per_feature_errors(api: Api) -> None:
    store = await api.store(external_id="ST-1", timezone="Europe/Paris")
    reply = (await api.as_role("marketer", "POST", "/v1/geofences/import",
                               json=_collection())).ok(200)
    assert reply["created"] == 2
    assert [(e["index"], e["reason"]) for e in reply["errors"]] == [
        (1, "invalid_feature"), (3, "unclosed_ring"), (4, "unknown_store")]
    items = (await api.as_role("marketer", "GET", "/v1/geofences")).ok(200)["items"]
    assert {g["name"] for g in items} == {"a", "poly"}
    assert {g["store_id"] for g in items if g["name"] == "a"} == {store["id"]}


async def test_an_imported_feature_follows_the_geofence_body_rules(api: Api) -> None:
    """A feature is checked by the model of POST /v1/geofences. Where the import's own
    checks disagreed with it, it now holds: a name past 200 characters is refused (it was
    cut), a dwell of 60.0 s is 60 s (it was refused), a null dwell is the default."""
    store = await api.store(external_id="4021", timezone="Europe/Paris")

    def point(i: int, **props: object) -> dict:
        return {"type": "Feature", "id": i, "properties": {"radius_m": 50, **props},
                "geometry": {"type": "Point", "coordinates": [LON + i * 1e-3, LAT]}}

    reply = (await api.as_role("marketer", "POST", "/v1/geofences/import", json={
        "type": "FeatureCollection", "features": [
            point(0, name="x" * 201),
            point(1, name="ok", dwell_s=60.0, store_external_id=4021, layer="shops"),
            point(2, name="   ", dwell_s=None),
            point(3, name="bad dwell", dwell_s=True),
            point(4, name=["a"]),
            point(5, name="long wait", dwell_s=7 * 86400 + 1),
        ]})).ok(200)
    assert reply["created"] == 2
    assert [(e["index"], e["reason"], e["message"].split(":")[0]) for e in reply["errors"]] == [
        (0, "invalid_feature", "properties.name"), (3, "invalid_feature", "properties.dwell_s"),
        (4, "invalid_feature", "properties.name"), (5, "invalid_feature", "properties.dwell_s")]
    items = (await api.as_role("marketer", "GET", "/v1/geofences")).ok(200)["items"]
    made = {g["name"]: (g["dwell_s"], g["store_id"]) for g in items}
    assert made["ok"] == (60, store["id"])
    default_dwell = made["geofence 2"][0]
    reply = await api.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "x" * 201, "geometry": {"type": "Circle", "center": [LON, LAT], "radius_m": 50}})
    assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == "name"
    created = (await api.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "api", "dwell_s": None,
        "geometry": {"type": "Circle", "center": [LON, LAT], "radius_m": 50}})).ok(201)
    assert created["dwell_s"] == default_dwell


async def test_cli_import_geofences(api: Api, database_url: str, tmp_path: Path, db) -> None:
    path = tmp_path / "fences.geojson"
    path.write_text(json.dumps(_collection()))
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "geopush", "import", "geofences", str(path)], cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GEOPUSH_DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["created"] == 1  # no store ST-1 in this database: feature 0 fails too
    assert await db.fetchval("SELECT count(*) FROM geofences") == 1


# Stores


async def test_store_crud_timezone_hours_and_pagination(api: Api) -> None:
    bad = await api.as_role("marketer", "POST", "/v1/stores", json={
        "external_id": "X", "name": "x", "timezone": "Mars/Olympus",
        "location": {"lat": 1, "lon": 2}})
    assert bad.status == 400 and "timezone" in bad.body["error"]["message"]
    hours = {"mon": [["08:00", "21:00"]], "sat": [["22:00", "02:00"]]}
    store = await api.store(external_id="P-1", timezone="Europe/Paris", opening_hours=hours)
    assert store["opening_hours"]["mon"] == [["08:00", "21:00"]]
    dup = await api.as_role("marketer", "POST", "/v1/stores", json={
        "external_id": "P-1", "name": "x", "timezone": "UTC", "location": {"lat": 1, "lon": 2}})
    assert dup.status == 409
    bad_hours = await api.as_role("marketer", "PATCH", f"/v1/stores/{store['id']}",
                                  json={"opening_hours": {"mon": [["8h", "21:00"]]}})
    assert bad_hours.status == 400
    patched = (await api.as_role("marketer", "PATCH", f"/v1/stores/{store['id']}",
                                 json={"name": "Paris 1", "timezone": "America/Toronto"})).ok(200)
    assert (patched["name"], patched["timezone"]) == ("Paris 1", "America/Toronto")
    for i in range(3):
        await api.store(external_id=f"P-{i + 2}")
    first = (await api.as_role("marketer", "GET", "/v1/stores?limit=3")).ok(200)
    assert len(first["items"]) == 3 and first["next_cursor"]
    rest = (await api.as_role("marketer", "GET",
                              f"/v1/stores?limit=3&cursor={first['next_cursor']}")).ok(200)
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert (await api.as_role("marketer", "DELETE", f"/v1/stores/{store['id']}")).status == 204
    assert (await api.as_role("marketer", "GET", f"/v1/stores/{store['id']}")).status == 404


async def test_roles(api: Api) -> None:
    assert (await api.call("GET", "/v1/stores")).status == 401
    assert (await api.as_role("app", "GET", "/v1/stores")).status == 403
    assert (await api.as_role("ops", "POST", "/v1/geofences", json={})).status == 403
    assert (await api.as_role("marketer", "POST", "/v1/keys",
                              json={"role": "admin"})).status == 403


async def test_import_reads_up_to_max_import_bytes_not_max_body_bytes(start_server) -> None:
    from tests.conftest import ADMIN_KEY

    features = [{"type": "Feature", "properties": {"name": f"f{i}", "radius_m": 50},
                 "geometry": {"type": "Point", "coordinates": [LON + i * 1e-3, LAT]}}
                for i in range(400)]
    body = {"type": "FeatureCollection", "features": features}
    assert len(json.dumps(body)) > 40_000
    server = await start_server(limits={"max_body_bytes": 4096, "max_import_bytes": 1 << 20})
    async with Api(server.url, ADMIN_KEY) as api:
        reply = await api.as_role("marketer", "POST", "/v1/geofences/import", json=body)
        assert reply.ok(200)["created"] == 400
    small = await start_server(limits={"max_body_bytes": 4096, "max_import_bytes": 8192})
    async with Api(small.url, ADMIN_KEY) as api:
        reply = await api.as_role("marketer", "POST", "/v1/geofences/import", json=body)
        assert reply.status == 413 and reply.body["error"]["code"] == "too_large"


async def test_the_geofence_count_limit_holds_for_creates_and_imports(start_server) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(limits={"max_geofences": 3})
    async with Api(server.url, ADMIN_KEY) as api:
        await api.circle(48.85, 2.35, 50)
        await api.circle(48.86, 2.35, 50)
        two = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"name": f"f{i}", "radius_m": 50},
             "geometry": {"type": "Point", "coordinates": [2.37 + i / 100, 48.85]}}
            for i in range(2)]}
        reply = await api.as_role("marketer", "POST", "/v1/geofences/import", json=two)
        assert reply.status == 409 and reply.body["error"]["code"] == "too_many_geofences"
        await api.circle(48.87, 2.35, 50)
        reply = await api.as_role("marketer", "POST", "/v1/geofences", json={
            "name": "one too many", "geometry": {"type": "Circle", "center": [2.35, 48.88],
                                                 "radius_m": 50}})
        assert reply.status == 409 and reply.body["error"]["code"] == "too_many_geofences"
        listed = (await api.as_role("marketer", "GET", "/v1/geofences")).ok(200)["items"]
        assert len(listed) == 3
