"""A test push (SPEC section 16): the offer's message, rendered for one device, sent now.

It never enters the outbox, the decisions or the deliveries, so nothing counts it: not the
offer's stats, not `max_sends`, not the cooldown or the daily cap. The push carries
`"test": "1"` in its data so the app (and the marketer's phone) can tell it apart. It goes
through the same SDK message building and transport as the sender's pushes, from a firebase
app of its own that lives for this one send.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.templates import render
from geopush.config import FcmConfig
from geopush.delivery import fcm
from geopush.delivery.transport import FcmTransport
from geopush.errors import NotFound, Unprocessable
from geopush.store.offers import offer_from_row

_OFFER = "SELECT * FROM offers WHERE offer_id = $1 AND deleted_at IS NULL"
_DEVICE = """
SELECT d.fcm_token, d.fcm_token_active, d.locale, c.first_name
FROM devices d LEFT JOIN customers c ON c.customer_id = d.customer_id
WHERE d.device_id = $1
"""
_STORE = """
SELECT s.store_id, s.name FROM stores s
WHERE s.store_id = ANY($1::uuid[])
   OR s.store_id IN (SELECT g.store_id FROM geofences g WHERE g.geofence_id = ANY($2::uuid[]))
ORDER BY s.name, s.store_id LIMIT 1
"""


async def send_test_push(conn: asyncpg.Connection, config: FcmConfig, offer_id: UUID,
                         device_id: UUID, now: datetime) -> dict[str, Any]:
    """Send the offer's message to the device now; what was sent and how FCM answered."""
    row = await conn.fetchrow(_OFFER, offer_id)
    if row is None:
        raise NotFound("offer")
    device = await conn.fetchrow(_DEVICE, device_id)
    if device is None:
        raise NotFound("device")
    if not device["fcm_token"] or not device["fcm_token_active"]:
        raise Unprocessable("the device has no active FCM token to send to", code="no_token")
    if not config.credentials_file:
        raise Unprocessable("FCM is not configured ([fcm] credentials_file)",
                            code="fcm_not_configured")
    offer = offer_from_row(row)
    store = await conn.fetchrow(_STORE, [UUID(s) for s in offer.store_ids],
                                [UUID(g) for g in offer.geofence_ids])
    title, body = render(offer.message, device["locale"], {
        "first_name": device["first_name"], "store_name": store["name"] if store else None})
    test_id = f"test-{uuid.uuid4()}"
    message = fcm.build_message(
        token=device["fcm_token"], title=title, body=body, delivery_id=test_id,
        offer_id=offer.id, store_id=store["store_id"] if store else None, geofence_id=None,
        deeplink=offer.deeplink, ttl_s=offer.ttl_s, now=now)
    assert message.data is not None
    message.data["test"] = "1"
    app = fcm.make_firebase_app(config.credentials_file, config.project_id or None,
                                config.endpoint, f"geopush-test-push-{test_id}")
    transport = FcmTransport(app)
    try:
        [answer] = await transport.send_each([message])
    finally:
        await transport.close()
        await fcm.close_firebase_app(app)
    outcome = fcm.classify(answer)
    return {"test_id": test_id, "device_id": str(device_id), "offer_id": offer.id,
            "title": title, "body": body, "sent": answer.success,
            "outcome": str(outcome.action),
            "error": None if outcome.reason is None else str(outcome.reason)}
