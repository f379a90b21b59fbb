"""Offers and stores as the pure campaign code sees them, read from their rows."""

from __future__ import annotations

from typing import Any

import asyncpg

from geopush.campaigns.offers import Offer, StoreInfo, offer_from_json
from geopush.timefmt import format_ts


def offer_from_row(row: asyncpg.Record | dict[str, Any]) -> Offer:
    definition = dict(row["definition"])
    definition["id"] = str(row["offer_id"])
    definition["created_at"] = format_ts(row["created_at"])
    definition["status"] = row["status"]
    return offer_from_json(definition)


def store_from_row(row: asyncpg.Record) -> StoreInfo:
    return StoreInfo(id=str(row["store_id"]), name=row["name"], timezone=row["timezone"],
                     opening_hours=row["opening_hours"])
