"""Fresh rules after every transactions import, without ever making an import wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from geopush.config import Config
from geopush.insights.basket_rules import recompute_job
from geopush.insights.mining_pool import MiningPool

log = logging.getLogger(__name__)


class RulesRefresher:
    """One background recompute at a time; imports during a run ask for one more after it
    (however many there were), so a burst of imports costs at most two runs."""

    def __init__(self, miner: MiningPool, dsn: str, config: Config,
                 clock: Callable[[], datetime]) -> None:
        self._miner, self._dsn, self._config, self._clock = miner, dsn, config, clock
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="basket-rules-refresh")

    async def recompute(self) -> dict[str, Any]:
        """One run now, in a child process; its summary."""
        return await self._miner.run(recompute_job, self._dsn, self._config, self._clock())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.recompute()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("basket rules recompute failed")
            if not self._again:
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
