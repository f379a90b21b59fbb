"""Request bodies are checked by models: each problem is a 400 naming the field by its dotted
path; deep nesting, times outside years 1–9998 and numbers PostgreSQL cannot hold are 400s
(a ping's bad time is that ping `invalid`), never 500s."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest

from geopush.api.json_depth import json_depth_exceeds
from geopush.campaigns.offer_body import AudienceBody, OfferCreate
from geopush.campaigns.offers import Audience, Offer
from tests.api_client import EN_FR, Api, iso
from tests.conftest import unique_token

STORE = {"external_id": "S-1", "name": "Store", "timezone": "Europe/Paris",
         "location": {"lat": 48.85, "lon": 2.35}}
BAD_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:60Z", "9999-06-01T00:00:00Z",
             "0000-12-31T23:00:00Z", "2025-02-30T00:00:00Z", "2025-05-01T09:00:00",
             "2025-05-01"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_depth_scan() -> None:
    assert not json_depth_exceeds(nested(32).encode(), 32)
    assert json_depth_exceeds(nested(33).encode(), 32)
    # Brackets inside strings, escaped quotes and backslashes do not nest.
    text = '{"a": "' + "[" * 100 + '\\"[[[\\\\", "b": [1, {"c": "]]]"}]}'
    assert not json_depth_exceeds(text.encode(), 3)
    assert json_depth_exceeds(b'{"a": [[[{"b": "x"}]]]}', 4)
    assert json_depth_exceeds(b"[" * 10_000_000, 32)


async def test_deep_json_is_400(api: Api, db) -> None:
    key = await api.key("marketer")
    for depth in (33, 100_000):
        body = '{"external_id": "x", "name": "y", "categories": ' + nested(depth) + "}"
        reply = await api.call("POST", "/v1/stores", key=key, data=body,
                               headers={"Content-Type": "application/json"})
        assert reply.status == 400, reply
        assert "nested deeper than 32" in reply.body["error"]["message"]
    # 32 levels is fine for the parser; the model then says what is wrong with it.
    body = '{"external_id": "x", "name": "y", "categories": ' + nested(31) + "}"
    reply = await api.call("POST", "/v1/stores", key=key, data=body,
                           headers={"Content-Type": "application/json"})
    assert reply.status == 400 and "nested" not in reply.body["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM stores") == 0


@pytest.mark.parametrize("bad", BAD_TIMES)
async def test_offer_time_out_of_range_is_400(api: Api, bad: str) -> None:
    fence = await api.circle(48.85, 2.35, 100)
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "message": EN_FR, "geofence_ids": [fence["id"]],
        "starts_at": bad})
    assert reply.status == 400, reply
    assert reply.body["error"]["details"][0]["field"] == "starts_at"


async def test_ping_time_out_of_range_is_that_ping_invalid(api: Api) -> None:
    dev = await api.device(unique_token())
    good = {"lat": 48.85, "lon": 2.35, "accuracy_m": 5, "ts": iso(datetime.now(UTC))}
    pings = [{**good, "ts": bad} for bad in BAD_TIMES] + [good]
    reply = (await api.call("POST", "/v1/pings", key=dev.token,
                            json={"pings": pings})).ok(202)
    assert reply["accepted"] == 1
    assert reply["rejected"] == [{"index": i, "reason": "invalid"}
                                 for i in range(len(BAD_TIMES))]


@pytest.mark.parametrize(("body", "field"), [
    ('{"dwell_s": 2147483648}', "dwell_s"),
    ('{"dwell_s": 1e400}', "dwell_s"),
    ('{"dwell_s": 9999999999999999999999999999}', "dwell_s"),
    ('{"dwell_s": 12.5}', "dwell_s"),
    ('{"dwell_s": true}', "dwell_s"),
    ('{"enabled": "yes"}', "enabled"),
    ('{"name": 7}', "name"),
    ('{"colour": "red"}', "colour"),
])
async def test_geofence_fields_are_checked(api: Api, db, body: str, field: str) -> None:
    base = '{"name": "n", "geometry": {"type": "Circle", "center": [2.35, 48.85], "radius_m": 50}'
    merged = base + ", " + body[1:]
    reply = await api.as_role("marketer", "POST", "/v1/geofences", data=merged,
                              headers={"Content-Type": "application/json"})
    assert reply.status == 400, reply
    assert [d["field"] for d in reply.body["error"]["details"]] == [field]
    assert await db.fetchval("SELECT count(*) FROM geofences") == 0


async def test_every_bad_field_is_listed_by_dotted_path(api: Api) -> None:
    reply = await api.as_role("marketer", "POST", "/v1/stores", json={
        **STORE, "location": {"lat": 91, "lon": "east", "alt": 3},
        "opening_hours": {"mon": [["08:00"]]}, "categories": ["", "ok"]})
    assert reply.status == 400
    fields = sorted(d["field"] for d in reply.body["error"]["details"])
    assert fields == ["categories.0", "location.alt", "location.lat", "location.lon",
                      "opening_hours.mon.0"]
    assert reply.body["error"]["message"].startswith(reply.body["error"]["details"][0]["field"])
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "geofence_ids": ["x"],
        "message": {"default_locale": "en", "translations": {"en": {"title": "t"}}}})
    assert reply.status == 400
    assert reply.body["error"]["details"] == [
        {"field": "message.translations.en.body", "message": "is required"}]


async def test_integral_float_is_read_as_a_whole_number(api: Api) -> None:
    fence = (await api.as_role("marketer", "POST", "/v1/geofences", json={
        "name": "n", "dwell_s": 120.0,
        "geometry": {"type": "Circle", "center": [2.35, 48.85], "radius_m": 50}})).ok(201)
    assert fence["dwell_s"] == 120


def test_offer_model_has_every_offer_field() -> None:
    """A field added to the offer must be added to its request model too, or it is refused."""
    assert {f.name for f in fields(Offer)} <= set(OfferCreate.model_fields)
    assert {f.name for f in fields(Audience)} <= set(AudienceBody.model_fields)
