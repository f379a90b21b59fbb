"""An upload spooled to a temporary file before any database work starts.

A CSV import runs in one PostgreSQL transaction. Fed straight from the socket, that
transaction (and its pool connection) would stay open for as long as the client takes to
send the file, and a few clients that send a header and stall would hold the whole pool.
Spooled first, the file is complete on local disk when the connection is taken, so the
connection is held only for work that is ready to run, at disk speed. The cost is disk
space (up to `[limits] max_import_bytes` per running import, and at most
`[limits] max_concurrent_imports` of them) and no overlap between upload and import.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from aiohttp import web

from geopush.api.body import body_chunks
from geopush.api.runtime import RUNTIME

#: Bytes gathered before one write to disk, and read back at a time.
SPOOL_BLOCK = 1024 * 1024
_DIRECTORY = "spool"


class SpooledBody:
    """The complete body in an anonymous temporary file (gone when closed)."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle = handle
        self.size = size

    async def chunks(self, block: int = SPOOL_BLOCK) -> AsyncIterator[bytes]:
        """The body from the start, in blocks read off the event loop."""
        await asyncio.to_thread(self._handle.seek, 0)
        while chunk := await asyncio.to_thread(self._handle.read, block):
            yield chunk


def _temporary_file(directory: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(mode="w+b", dir=directory)


@contextlib.asynccontextmanager
async def spooled_body(request: web.Request, limit: int, *, what: str = "import"
                       ) -> AsyncIterator[SpooledBody]:
    """Receive the whole body (413 past `limit`, 408 when it stalls) into a temporary file
    under `[data] dir/spool/`; the file is removed on leaving."""
    directory = Path(request.app[RUNTIME].config.data.dir).expanduser() / _DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    handle = await asyncio.to_thread(_temporary_file, directory)
    try:
        size = 0
        pending = bytearray()
        async for chunk in body_chunks(request, limit, what=what):
            pending += chunk
            size += len(chunk)
            if len(pending) >= SPOOL_BLOCK:
                await asyncio.to_thread(handle.write, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(handle.write, bytes(pending))
        yield SpooledBody(handle, size)
    finally:
        handle.close()
