"""The one polling helper of the tests: wait for something the server does on its own time.

The sender, the sweeper, retention and the rules' refresher run beside the request that
started their work, so a test waits for what a user would see (a push at the emulator, a
row, a status) rather than sleeping a fixed time: it goes on as soon as the thing is there,
and a slow machine only makes it wait longer, never fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0,
                     every: float = 0.05, what: str | None = None) -> T:
    """Call `check` (async) until it returns something truthy, and return that.

    Fails with AssertionError after `within` seconds, naming `what` (or the check's
    docstring) and the last value seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            name = what or (check.__doc__ or "").strip() or repr(check)
            raise AssertionError(f"not so within {within} s: {name} (last: {value!r})")
        await asyncio.sleep(every)
