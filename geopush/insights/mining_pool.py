"""Mining off the serving process: jobs run in child processes of their own.

Mining a million baskets takes the CPU for seconds to minutes; in a thread it would still
hold the interpreter lock that ingest needs. A child process (spawned, so it shares nothing
with the server's threads and connections) opens its own database connections, loads the
baskets, mines, and writes or returns the rules; the server only awaits a future.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Children at most: a background recompute and a marketer's query can run side by side.
MAX_CHILDREN = 2


def _child_init() -> None:
    from geopush.logs import setup_logging

    setup_logging()


def _run_in_child(job: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...]) -> T:
    return asyncio.run(job(*args))


class MiningPool:
    """A lazily started pool of spawned children running async jobs to completion."""

    def __init__(self, children: int = MAX_CHILDREN) -> None:
        self._children = children
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the API loop and the background thread both submit

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self._children, initializer=_child_init,
                    mp_context=multiprocessing.get_context("spawn"))
            return self._executor

    async def run(self, job: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run `job(*args)` (a module-level coroutine function) in a child; its result."""
        executor = self._get()
        try:
            return await asyncio.wrap_future(executor.submit(_run_in_child, job, args))
        except BrokenProcessPool:
            # A child died (killed, out of memory): the next job gets a fresh pool.
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            raise

    def shutdown(self) -> None:
        """Stop the children now: a run cut short rolls back (its transaction never
        commits), and a server's shutdown never waits minutes for a mining job."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        # The executor keeps its children in a private map (Python 3.14 adds a public
        # terminate_workers()); without it, exit would wait for a running job to finish.
        children = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for child in children:
            if child.is_alive():
                child.terminate()
