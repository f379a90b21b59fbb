"""A store's system receiving geopush alerts, as a store would run it: verify, then keep.

It checks `X-Geopush-Signature` over the raw body before parsing it, drops repeats by the
alert's `id`, and can be told to answer with failures first (to see the retries).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from aiohttp import web

from geopush.alerts.signing import HEADER, verify

SIGNING_SECRET = "test-alert-signing-secret-" + "k" * 16


class AlertReceiver:
    def __init__(self, secret: str = SIGNING_SECRET) -> None:
        self.secret = secret
        self.alerts: dict[str, dict[str, Any]] = {}  # by id: each alert once
        self.deliveries: Counter[str] = Counter()  # by id: how often it arrived
        self.bad_signatures = 0
        self.fail_next: list[int] = []  # statuses to answer before accepting
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0))
        if not verify(self.secret, request.headers.get(HEADER, ""), raw):
            self.bad_signatures += 1
            return web.Response(status=401)
        alert = json.loads(raw)
        self.deliveries[alert["id"]] += 1
        self.alerts.setdefault(alert["id"], alert)
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/alerts", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/alerts"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
