"""At most `[limits] max_concurrent_imports` imports at once; 429 with Retry-After beyond.

The slots are lock files under `[data] dir/import-slots/` held with `flock`, so the limit
holds across every process sharing that directory: the workers of `geopush serve
--workers N` (and several `serve` processes on one machine) share one set of slots, which
is what bounds the CPU, memory and disk an import takes on that machine. The kernel drops
a lock when its process dies, so a crashed import never keeps a slot. Machines with their
own `[data] dir` each have their own slots (the limit is per machine, not per cluster: a
cluster-wide one would have to live in PostgreSQL and hold a connection for the whole
upload, which is what the imports must not do).

A slot is taken before the body is read: a client uploading slowly holds its slot (not a
database connection) until its body arrives or `[limits] body_timeout_s` cuts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from geopush.api.errors import ApiError
from geopush.api.runtime import RUNTIME

#: Seconds a refused client is told to wait before trying again.
RETRY_AFTER_S = 5
_DIRECTORY = "import-slots"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on `path`, or None when another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def import_slot(directory: Path, limit: int) -> Iterator[bool]:
    """Hold one of `limit` slots under `directory` while inside; yields False when all are
    taken (nothing is held then). Non-blocking: a few syscalls, fine on the event loop."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = None
    for slot in range(limit):
        fd = _try_lock(directory / f"slot-{slot}.lock")
        if fd is not None:
            break
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # closing the only fd of the open file releases the flock


@contextlib.contextmanager
def running_import(request: web.Request) -> Iterator[None]:
    """Run the body inside an import slot of this machine, or answer 429."""
    config = request.app[RUNTIME].config
    limit = config.limits.max_concurrent_imports
    directory = Path(config.data.dir).expanduser() / _DIRECTORY
    with import_slot(directory, limit) as taken:
        if not taken:
            raise ApiError(
                429, "rate_limited",
                f"{limit} imports are already running ([limits] max_concurrent_imports);"
                " try again later", headers={"Retry-After": str(RETRY_AFTER_S)})
        yield
