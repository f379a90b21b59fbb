"""Work that runs beside the API in a thread of its own: sender, dwell sweeper, retention,
daily segments and basket rules.

The dwell sweeper and retention run in every process, so no node's `[server] run_sender`
setting can leave dwells unfired or personal data kept past its time: the sweeper locks each
device row (SKIP LOCKED) and re-reads the visit under it, and retention takes an advisory
lock (another node already at it: this one skips the round), so several at once are safe.
The sender and the daily segment recompute run only where `run_sender` is true.

Its own thread and event loop keep the FCM SDK's blocking token fetch and the periodic
sweeps away from the ingest loop; its own small pool keeps them from taking ingest's
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from geopush.config import Config
from geopush.store.database import create_pool

if TYPE_CHECKING:
    from geopush.alerts.sender import AlertSender
    from geopush.delivery.sender import Sender
    from geopush.insights.mining_pool import MiningPool

log = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0
# Without a sender, how often (at most) the outbox is settled.
_SETTLE_MIN_S = 0.5


def latest_due(now: datetime, hour: int) -> datetime:
    """The most recent time (at or before `now`) the daily jobs were due: `hour`:00 UTC."""
    due = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return due if due <= now else due - timedelta(days=1)


class Background:
    def __init__(self, config: Config, dsn: str, miner: MiningPool | None = None) -> None:
        self.config = config
        self.dsn = dsn
        # Mines the daily basket rules in a child process (a MiningPool); none: no mining.
        self.miner = miner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="geopush-background",
                                        daemon=True)
        self._started = threading.Event()
        self.sender: Sender | None = None
        self.alert_sender: AlertSender | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=30)

    def stop(self) -> None:
        """Stop claiming, let in-flight batches finish and be recorded, then return."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            if self.sender is not None:
                self._loop.call_soon_threadsafe(self.sender.stop)
            if self.alert_sender is not None:
                self._loop.call_soon_threadsafe(self.alert_sender.stop)
        self._thread.join(timeout=self.config.server.shutdown_timeout_s + 5)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pool = await create_pool(self.dsn, max(2, self.config.fcm.max_concurrency + 2))
        tasks = []
        try:
            sends = self.config.server.run_sender
            if sends and self.config.fcm.credentials_file:
                from geopush.delivery.sender import Sender

                self.sender = Sender(self.config.fcm, pool, f"geopush-{os.getpid()}-{id(self)}")
                tasks.append(asyncio.create_task(self.sender.run(self.dsn)))
            elif sends:
                # The sender's upkeep still runs: queued deliveries expire and are
                # cancelled when their visit ends, instead of using up max_sends.
                log.warning("[fcm] credentials_file is not set: nothing is sent; deliveries"
                            " still expire and are cancelled when their visit ends")
                tasks.append(asyncio.create_task(self._every(
                    max(self.config.fcm.poll_interval_s, _SETTLE_MIN_S), self._settle, pool)))
            tasks.append(asyncio.create_task(self._every(
                self.config.geo.sweep_interval_s, self._sweep, pool)))
            tasks.append(asyncio.create_task(self._every(
                _RETENTION_EVERY_S, self._retention, pool)))
            if sends:
                tasks.append(asyncio.create_task(self._daily_segments(pool)))
                # Store alerts (SPEC section 15): their own outbox and sender.
                from geopush.alerts.sender import AlertSender

                self.alert_sender = AlertSender(self.config.alerts, pool)
                alert_task = asyncio.create_task(self.alert_sender.run(self.dsn))
                tasks.append(alert_task)
            self._started.set()
            await self._stop.wait()
            if self.alert_sender is not None:  # its batch in flight finishes and is recorded
                self.alert_sender.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(alert_task),
                                           self.config.server.shutdown_timeout_s)
            if self.sender is not None:
                self.sender.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(tasks[0]),
                                           self.config.server.shutdown_timeout_s)
                except TimeoutError:
                    pass
                except Exception:
                    log.exception("the sender ended with an error")
        finally:
            self._started.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()

    async def _every(self, seconds: float, job: Callable[[asyncpg.Pool], Awaitable[None]],
                     pool: asyncpg.Pool) -> None:
        while True:
            try:
                await job(pool)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed", job.__name__)
            await asyncio.sleep(seconds)

    async def _sweep(self, pool: asyncpg.Pool) -> None:
        from geopush.ingest.sweeper import sweep_dwells

        await sweep_dwells(pool, self.config, datetime.now(UTC))

    async def _settle(self, pool: asyncpg.Pool) -> None:
        from geopush.delivery.upkeep import settle_outbox

        async with pool.acquire() as conn:
            await settle_outbox(conn)

    async def _retention(self, pool: asyncpg.Pool) -> None:
        from geopush.store.retention import apply_retention

        await apply_retention(pool, self.config)

    async def _daily_segments(self, pool: asyncpg.Pool) -> None:
        hour = self.config.segments.daily_recompute_hour_utc
        # A process that was down at the hour catches up when it starts: the last run is
        # older than the latest due time. (A database that never had a run waits for the
        # hour, or for `geopush segments recompute`.)
        try:
            last = await pool.fetchval("SELECT max(computed_at) FROM segment_runs")
        except (OSError, asyncpg.PostgresError):
            last = None  # the database is away: wait for the hour
        catch_up = last is not None and last < latest_due(datetime.now(UTC), hour)
        while True:
            if not catch_up:
                now = datetime.now(UTC)
                due = latest_due(now, hour) + timedelta(days=1)
                log.info("next daily segment recompute at %s", due.isoformat())
                await asyncio.sleep((due - now).total_seconds())
            catch_up = False
            try:
                from geopush.crm.segments import recompute_segments

                await recompute_segments(pool, self.config, datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("daily segment recompute failed")
            # After the segments: the rules' audiences read them.
            await self._daily_rules()

    async def _daily_rules(self) -> None:
        if self.miner is None:
            return
        from geopush.insights.basket_rules import recompute_job

        try:
            await self.miner.run(recompute_job, self.dsn, self.config, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("daily basket rules recompute failed")
