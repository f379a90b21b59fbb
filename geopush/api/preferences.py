"""`PUT/GET /v1/devices/me/preferences` (SPEC section 15): what the customer asks for.

Interests, a weekly maximum and personal quiet hours, kept for the customer when the
device is linked (so every one of their phones obeys them), else for the device. The
decision reads them at its next event; changes are logged like consent.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web

from geopush.api.auth import require_device
from geopush.api.body import field_error, read_model
from geopush.api.openapi import BY_DEVICE, documented, obj
from geopush.api.runtime import RUNTIME
from geopush.api.schema import NonBlank, RequestBody, WholeIn
from geopush.campaigns.opening_hours import ClockTime
from geopush.store.preferences import (
    Preferences,
    device_customer,
    read_preferences,
    save_preferences,
    subject_of,
)


class QuietHours(RequestBody):
    """Local time on the device's clock; may wrap midnight; start == end turns them off."""

    start: ClockTime
    end: ClockTime


class PreferencesBody(RequestBody):
    interests: list[Annotated[str, NonBlank(100)]] | None = None
    max_per_week: Annotated[int, WholeIn(0, 21)] | None = None
    quiet_hours: QuietHours | None = None


_OPT_TEXT = {"type": ["string", "null"]}
PREFERENCES = obj(
    ("interests", "max_per_week", "quiet_hours"),
    interests={"type": ["array", "null"], "items": {"type": "string"}},
    max_per_week={"type": ["integer", "null"], "minimum": 0, "maximum": 21},
    quiet_hours={"type": ["object", "null"], "properties": {"start": _OPT_TEXT,
                                                            "end": _OPT_TEXT}},
)


@documented("Set the customer's own interests, weekly maximum and quiet hours",
            auth=BY_DEVICE, body=PreferencesBody, response=PREFERENCES)
async def put_preferences(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    body = await read_model(request, PreferencesBody)
    rt = request.app[RUNTIME]
    interests = None
    if body.interests is not None:
        interests = tuple(dict.fromkeys(body.interests))  # a repeat says nothing more
        most = rt.config.limits.max_consent_categories
        if len(interests) > most:
            raise field_error("interests", f"at most {most} categories")
    quiet = body.quiet_hours
    prefs = Preferences(interests, body.max_per_week,
                        None if quiet is None else quiet.start,
                        None if quiet is None else quiet.end)
    async with rt.pool.acquire() as conn, conn.transaction():
        # The device row is locked as consent changes lock it: a link or unlink in
        # between cannot send the preferences to the wrong subject.
        customer_id = await device_customer(conn, device_id, lock=True)
        await save_preferences(conn, subject_of(customer_id, device_id), device_id, prefs)
    return web.json_response(prefs.as_json())


@documented("The preferences the decision applies to this device", auth=BY_DEVICE,
            response=PREFERENCES)
async def get_preferences(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        customer_id = await device_customer(conn, device_id)
        prefs = await read_preferences(conn, subject_of(customer_id, device_id))
    return web.json_response(prefs.as_json())


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/devices/me/preferences", put_preferences),
        web.get("/v1/devices/me/preferences", get_preferences),
    ]
