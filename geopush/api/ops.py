"""Routes of the ops API (filled in as the feature lands)."""

from __future__ import annotations

from aiohttp import web


def routes() -> list[web.RouteDef]:
    return []
