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

from geopush.errors import Busy

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Children for background runs (the daily and after-import recompute).
MAX_CHILDREN = 1
#: Marketers' queries waiting or running at once (one runs, in a child of its own); more
#: are refused (`QueriesBusy`) rather than queued behind each other without end.
MAX_QUERIES = 2
# How often a waiting query looks whether its client is still there.
_ABANDON_POLL_S = 0.2


class QueriesBusy(Busy):
    """As many mining queries as allowed are waiting or running already (429)."""

    def __init__(self, running: int) -> None:
        super().__init__(f"{running} basket queries are running or waiting: try again shortly",
                         retry_after_s=5)


def _child_init() -> None:
    from geopush.logs import setup_logging

    setup_logging()


def _run_in_child(job: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...]) -> T:
    return asyncio.run(job(*args))


def _new_executor(children: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=children, initializer=_child_init,
                               mp_context=multiprocessing.get_context("spawn"))


def _terminate(executor: ProcessPoolExecutor) -> None:
    # The executor keeps its children in a private map (Python 3.14 adds a public
    # terminate_workers()); without it, a running job would run to its end.
    children = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for child in children:
        if child.is_alive():
            child.terminate()


class MiningPool:
    """A lazily started pool of spawned children running async jobs to completion, and a
    lane of its own for marketers' queries, which stop when their client hangs up."""

    def __init__(self, children: int = MAX_CHILDREN, queries: int = MAX_QUERIES) -> None:
        self._children = children
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the API loop and the background thread both submit
        self._max_queries = queries
        self._queries = 0
        self._query_executor: ProcessPoolExecutor | None = None

    @property
    def queries(self) -> int:
        """Marketers' queries running or waiting in the lane now (at most `queries`)."""
        return self._queries

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = _new_executor(self._children)
            return self._executor

    async def query(self, job: Callable[..., Coroutine[Any, Any, T]], *args: Any,
                    abandoned: Callable[[], bool]) -> T:
        """Run a marketer's query in the query lane; `QueriesBusy` when it is full.

        Whenever `abandoned()` turns true (the client hung up) the query stops: taken off
        the queue, or, running, its child is ended, so nobody's work waits behind a result
        no one will read.
        """
        if self._queries >= self._max_queries:
            raise QueriesBusy(self._queries)
        self._queries += 1
        try:
            if self._query_executor is None:
                self._query_executor = _new_executor(1)
            executor = self._query_executor
            submitted = executor.submit(_run_in_child, job, args)
            future = asyncio.wrap_future(submitted)
            while True:
                done, _ = await asyncio.wait({future}, timeout=_ABANDON_POLL_S)
                if done:
                    return future.result()
                if abandoned():
                    if not submitted.cancel() and self._query_executor is executor:
                        # Running: end its child; the next query starts a fresh one.
                        self._query_executor = None
                        _terminate(executor)
                    future.cancel()
                    raise ConnectionResetError("the client hung up; the query was stopped")
        except BrokenProcessPool:
            if self._query_executor is not None:
                self._query_executor = None
            raise
        finally:
            self._queries -= 1

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
        queries, self._query_executor = self._query_executor, None
        for ex in (executor, queries):
            if ex is not None:
                _terminate(ex)
