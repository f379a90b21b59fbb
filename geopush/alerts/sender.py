"""The alert sender: claim due store alerts, POST them signed, record each outcome.

Like the FCM sender it runs in the background thread, never on the ingest loop, and shares
the outbox with any number of other senders. A 2xx is `sent`; a 408, 429, 5xx or network
error is retried with backoff and jitter (honouring Retry-After) up to `max_attempts`; any
other answer, a redirect, or a destination refused by `destination` fails the alert at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from geopush import metrics
from geopush.alerts.destination import (
    DestinationRefused,
    SafeResolver,
    address_allowed,
    url_problem,
)
from geopush.alerts.outbox import ALERTS_CHANNEL, AlertOutcome, ClaimedAlert, claim, depth, finish
from geopush.alerts.signing import HEADER, sign
from geopush.config import AlertsConfig
from geopush.delivery.retry import next_delay

log = logging.getLogger(__name__)

# Failure reasons of a store alert (its `reason` when `failed`).
NO_ALERT_URL = "no_alert_url"
DESTINATION_REFUSED = "destination_refused"
REDIRECT_REFUSED = "redirect_refused"
REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries_exhausted"
_RETRY_STATUSES = frozenset({408, 425, 429})


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _literal_refused(url: str, allow_private: bool) -> bool:
    """An IP literal host skips the resolver: checked here instead."""
    import ipaddress

    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address_allowed(host, allow_private)


class AlertSender:
    """One alert sender loop; several may run in as many processes against one outbox."""

    def __init__(self, config: AlertsConfig, pool: asyncpg.Pool) -> None:
        self.config = config
        self.pool = pool
        self.rng = random.Random()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self, *_: Any) -> None:
        self._wake.set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=SafeResolver(self.config.allow_private_addresses),
                limit=self.config.max_concurrency, use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, dsn: str) -> None:
        """Claim and send until stopped; LISTEN wakes it when an alert is queued."""
        if not self.config.signing_secret:
            log.warning("[alerts] signing_secret is not set: store alerts stay queued")
            return
        listener: asyncpg.Connection | None = None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            listener = await asyncpg.connect(dsn)
            await listener.add_listener(ALERTS_CHANNEL, self.wake)
        try:
            while not self._stopping.is_set():
                try:
                    handled = await self.drain_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the outbox keeps the work; try again soon
                    log.warning("alert claim failed: %s", type(exc).__name__)
                    handled = 0
                if not handled:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_s)
                    self._wake.clear()
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            await self.close()

    async def drain_once(self) -> int:
        """Claim one batch and send it; how many were handled."""
        async with self.pool.acquire() as conn:
            claimed = await claim(conn, self.config.batch_size, self.config.lease_s)
            metrics.ALERTS_OUTBOX_DEPTH.set(await depth(conn))
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._send(a) for a in claimed))
        async with self.pool.acquire() as conn:
            await finish(conn, outcomes)
        for o in outcomes:
            metrics.ALERT_ATTEMPTS.labels(o.status, o.reason or "").inc()
        return len(outcomes)

    async def drain(self) -> int:
        """Send everything due now (CLI and tests)."""
        total = 0
        while handled := await self.drain_once():
            total += handled
        return total

    async def _send(self, alert: ClaimedAlert) -> AlertOutcome:
        allow = self.config.allow_private_addresses
        if not alert.url:
            return self._failed(alert, NO_ALERT_URL)
        problem = url_problem(alert.url)
        if problem is not None or _literal_refused(alert.url, allow):
            return self._failed(alert, DESTINATION_REFUSED, problem or "address refused")
        headers = {"Content-Type": "application/json",
                   HEADER: sign(self.config.signing_secret, alert.body),
                   "Idempotency-Key": str(alert.alert_id)}
        try:
            async with self._client().post(alert.url, data=alert.body, headers=headers,
                                           allow_redirects=False) as resp:
                await resp.read()
                status = resp.status
                retry_after = _retry_after(resp.headers)
        except DestinationRefused as exc:
            return self._failed(alert, DESTINATION_REFUSED, str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                return self._failed(alert, DESTINATION_REFUSED, str(exc.os_error))
            return self._retry(alert, type(exc).__name__, None, None)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._retry(alert, type(exc).__name__, None, None)
        if 200 <= status < 300:
            return AlertOutcome(alert.alert_id, alert.attempts, "sent", http_status=status)
        if 300 <= status < 400:
            return self._failed(alert, REDIRECT_REFUSED, f"HTTP {status}", status)
        if status >= 500 or status in _RETRY_STATUSES:
            return self._retry(alert, f"HTTP {status}", status, retry_after)
        return self._failed(alert, REJECTED, f"HTTP {status}", status)

    def _failed(self, alert: ClaimedAlert, reason: str, error: str | None = None,
                http_status: int | None = None) -> AlertOutcome:
        return AlertOutcome(alert.alert_id, alert.attempts, "failed", reason, error=error,
                            http_status=http_status)

    def _retry(self, alert: ClaimedAlert, error: str, http_status: int | None,
               retry_after: float | None) -> AlertOutcome:
        if alert.attempts >= self.config.max_attempts:
            return self._failed(alert, RETRIES_EXHAUSTED, error, http_status)
        delay = next_delay(alert.attempts, retry_after, self.rng, self.config.retry_base_s,
                           self.config.retry_cap_s)
        return AlertOutcome(alert.alert_id, alert.attempts, "queued", None,
                            next_at=datetime.now(UTC) + timedelta(seconds=delay), error=error,
                            http_status=http_status)
