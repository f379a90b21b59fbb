"""The sender: claim due deliveries, send them through the FCM SDK, record each outcome.

It runs in a thread of its own with its own event loop and pool: the SDK fetches its OAuth
token with a blocking call inside `send_each_async`, which must never stall ingest. A
QUOTA_EXCEEDED answer pauses the whole sender (not just that message) until Retry-After,
and through the `sender_pause` row every other sender process too.
Shutdown stops claiming, lets the batches in flight finish and records their outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from firebase_admin import messaging

from geopush import metrics
from geopush.codes import DeliveryReason, DeliveryStatus
from geopush.config import FcmConfig
from geopush.delivery import fcm
from geopush.delivery.outbox import (
    OUTBOX_CHANNEL,
    Claimed,
    Finish,
    Recheck,
    claim,
    finish,
    pause,
    pause_left,
    recheck,
)
from geopush.delivery.retry import QUOTA_MIN_DELAY_S, next_delay
from geopush.delivery.transport import FcmTransport
from geopush.delivery.upkeep import settle_outbox
from geopush.store.consent import LOCATION_TRIGGERS

log = logging.getLogger(__name__)

# Messages handed to one send_each_async call ([fcm] transport = "sdk"). The SDK sends them
# all at once through an httpx pool of 100 connections, and httpx's pool scans its queue on
# every event: with 500 requests queued behind 100 connections, CPU goes to that scan
# (measured: 1,000 in flight ran several times slower than 100 at a time). A claimed batch
# of up to 500 goes out as calls of 100, one after the other. The aiohttp transport takes
# the whole batch at once (its pool of 100 connections queues the rest cheaply).
SDK_CHUNK = 100


class Sender:
    """One sender loop; several may run in as many processes against one outbox."""

    def __init__(self, config: FcmConfig, pool: asyncpg.Pool, app_name: str) -> None:
        self.config = config
        self.pool = pool
        self.app = fcm.make_firebase_app(
            config.credentials_file, config.project_id or None, config.endpoint, app_name
        )
        self.transport = FcmTransport(self.app) if config.transport == "aiohttp" else None
        self.rng = random.Random()
        self.paused_until = 0.0  # monotonic time; QUOTA_EXCEEDED pauses every batch
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self, *_: Any) -> None:
        self._wake.set()

    async def run(self, dsn: str) -> None:
        """Claim and send until stopped; LISTEN wakes it as soon as a delivery is queued."""
        listener: asyncpg.Connection | None = None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            listener = await asyncpg.connect(dsn)
            await listener.add_listener(OUTBOX_CHANNEL, self.wake)
        in_flight: set[asyncio.Task[int]] = set()
        try:
            while not self._stopping.is_set():
                pause = self.paused_until - time.monotonic()
                if pause > 0:
                    await self._sleep(min(pause, 1.0))
                    continue
                free = self.config.max_concurrency - len(in_flight)
                claimed: list[Claimed] = []
                if free > 0:
                    try:
                        claimed = await self._claim()
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        # Any database trouble (a dropped connection, a server restarting,
                        # a protocol error left by a cut connection) must not end the
                        # sender: it waits and claims again, and the outbox keeps the work.
                        log.warning("outbox claim failed: %s", type(exc).__name__)
                        await self._sleep(1.0)
                        continue
                if claimed:
                    task = asyncio.create_task(self.send_batch(claimed))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    continue
                if in_flight and free <= 0:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                await self._sleep(self.config.poll_interval_s)
        finally:
            if in_flight:  # graceful: the batches in flight finish and are recorded
                await asyncio.gather(*in_flight, return_exceptions=True)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            if self.transport is not None:
                with contextlib.suppress(Exception):
                    await self.transport.close()
            with contextlib.suppress(Exception):
                await fcm.close_firebase_app(self.app)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _claim(self) -> list[Claimed]:
        async with self.pool.acquire() as conn:
            await settle_outbox(conn)
            # Another process may have hit the quota.
            paused = await pause_left(conn, self.config.max_retry_after_s)
            if paused > 0:
                self.paused_until = max(self.paused_until, time.monotonic() + paused)
                return []
            return await claim(conn, self.config.batch_size, self.config.lease_s)

    async def drain(self) -> int:
        """Send everything due now, then return how many were handled (CLI and tests)."""
        total = 0
        while claimed := await self._claim():
            total += await self.send_batch(claimed)
        return total

    async def send_batch(self, claimed: list[Claimed]) -> int:
        """Send one claimed batch and record every outcome in one statement.

        Gather (consent and ownership checked again, one query), a pure step (the messages
        to send and the deliveries failed or cancelled without sending), the FCM calls,
        then one write of every outcome."""
        # Consent may have been withdrawn (or the device erased) since the claim: check
        # again right before sending (SPEC section 10).
        async with self.pool.acquire() as conn:
            checked = await recheck(conn, claimed, LOCATION_TRIGGERS)
        results, ready, messages = plan_sends(checked, datetime.now(UTC))
        outcomes: list[fcm.SendOutcome] = []
        chunk = SDK_CHUNK if self.transport is None else max(len(messages), 1)
        for start in range(0, len(messages), chunk):
            outcomes += await self._send_chunk(messages[start:start + chunk])
        deactivate: list[tuple[UUID, str]] = []
        for c, outcome in zip(ready, outcomes, strict=True):
            results.append(self._outcome(c, outcome, deactivate))
        quota_waits = [self._quota_wait(o) for o in outcomes
                       if o.action is fcm.SendAction.QUOTA]
        await self._record(results, deactivate, quota_waits)
        _observe(claimed, results)
        return len(results)

    async def _record(self, results: list[Finish], deactivate: list[tuple[UUID, str]],
                      quota_waits: list[float]) -> None:
        """Every outcome of a batch, the tokens FCM called dead, and a quota pause: one
        transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await finish(conn, results, deactivate)
            if quota_waits:  # FCM's quota is the project's: every sender process waits
                await pause(conn, max(quota_waits), self.config.max_retry_after_s)

    async def _send_chunk(self, messages: list[messaging.Message]) -> list[fcm.SendOutcome]:
        started = time.perf_counter()
        try:
            if self.transport is not None:
                responses = await self.transport.send_each(messages)
            else:
                responses = (await messaging.send_each_async(messages, app=self.app)).responses
            outcomes = [fcm.classify(r) for r in responses]
        except Exception as exc:  # the SDK refused the whole call: retry them all
            log.warning("FCM batch failed: %s", type(exc).__name__)
            outcomes = [fcm.classify_exception(exc)] * len(messages)
        metrics.FCM_REQUEST.observe(time.perf_counter() - started)
        return outcomes

    def _outcome(self, c: Claimed, outcome: fcm.SendOutcome,
                 deactivate: list[tuple[UUID, str]]) -> Finish:
        if outcome.action is fcm.SendAction.SENT:
            return Finish(c.delivery_id, c.attempts, DeliveryStatus.SENT,
                          message_name=outcome.message_name)
        if outcome.action is fcm.SendAction.FAIL:
            if outcome.deactivate_token and c.device_id is not None and c.token:
                deactivate.append((c.device_id, c.token))
            return Finish(c.delivery_id, c.attempts, DeliveryStatus.FAILED, str(outcome.reason),
                          error=outcome.error)
        quota = outcome.action is fcm.SendAction.QUOTA
        if quota:  # the whole sender waits, not just this message
            self.paused_until = max(self.paused_until,
                                    time.monotonic() + self._quota_wait(outcome))
        if c.attempts >= self.config.max_attempts:
            return Finish(c.delivery_id, c.attempts, DeliveryStatus.FAILED,
                          DeliveryReason.RETRIES_EXHAUSTED, error=outcome.error)
        delay = next_delay(c.attempts, self._retry_after(outcome), self.rng,
                           self.config.retry_base_s, self.config.retry_cap_s, quota=quota)
        return Finish(c.delivery_id, c.attempts, DeliveryStatus.QUEUED, None,
                      next_at=datetime.now(UTC) + timedelta(seconds=delay), error=outcome.error)

    def _retry_after(self, outcome: fcm.SendOutcome) -> float | None:
        """FCM's Retry-After, honoured up to `[fcm] max_retry_after_s` and never beyond."""
        if outcome.retry_after is None:
            return None
        return min(outcome.retry_after, self.config.max_retry_after_s)

    def _quota_wait(self, outcome: fcm.SendOutcome) -> float:
        """How long QUOTA_EXCEEDED stops sending: Retry-After (capped), or a minute."""
        retry_after = self._retry_after(outcome)
        return retry_after if retry_after is not None else QUOTA_MIN_DELAY_S


def plan_sends(checked: Recheck, now: datetime
               ) -> tuple[list[Finish], list[Claimed], list[messaging.Message]]:
    """The pure step of a batch: (outcomes known without sending -- consent withdrawn, no
    token, expired, a message FCM would refuse --, the deliveries to send, their messages)."""
    results: list[Finish] = []
    for c in checked.withdrawn:
        results.append(Finish(c.delivery_id, c.attempts, DeliveryStatus.CANCELLED,
                              DeliveryReason.CONSENT_WITHDRAWN))
    messages: list[messaging.Message] = []
    ready: list[Claimed] = []
    for c in checked.sendable:
        if c.token is None:
            results.append(Finish(c.delivery_id, c.attempts, DeliveryStatus.FAILED,
                                  DeliveryReason.NO_TOKEN))
            continue
        try:
            messages.append(fcm.build_message(
                token=c.token or "", title=c.title or "", body=c.body or "",
                delivery_id=c.delivery_id, offer_id=c.offer_id, store_id=c.store_id,
                geofence_id=c.geofence_id, deeplink=c.deeplink,
                ttl_s=(c.expires_at - now).total_seconds(), now=now,
            ))
            ready.append(c)
        except fcm.DeliveryExpired:  # no time left to live: never send it
            results.append(Finish(c.delivery_id, c.attempts, DeliveryStatus.FAILED,
                                  DeliveryReason.EXPIRED))
        except ValueError as exc:  # FCM would refuse it: fail it alone, not the batch
            results.append(Finish(c.delivery_id, c.attempts, DeliveryStatus.FAILED,
                                  DeliveryReason.INVALID_ARGUMENT, error=str(exc)))
    return results, ready, messages


def _observe(claimed: list[Claimed], results: list[Finish]) -> None:
    """A batch's metrics, once its outcomes are committed."""
    done_at = datetime.now(UTC)
    for r in results:
        if r.status != DeliveryStatus.QUEUED:
            metrics.DELIVERIES.labels(r.status, r.reason or "").inc()
    event_ts = {c.delivery_id: c.event_ts for c in claimed}
    for r in results:
        if r.status == DeliveryStatus.SENT:
            age = (done_at - event_ts[r.delivery_id]).total_seconds()
            metrics.EVENT_TO_SEND.observe(max(0.0, age))
