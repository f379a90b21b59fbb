"""Run the emulator in a background thread with its own event loop.

Why a thread and not a task: firebase-admin fetches its OAuth token with a *blocking*
call inside `send_each_async`, so an emulator served from the sender's event loop could
never answer that call and the sender would hang. A thread (or a process) avoids it.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from aiohttp import web

from geopush.emulator.server import DEFAULT_HOST, TOKEN_PATH, base_url, create_app
from geopush.emulator.state import EmulatorState

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class EmulatorThread:
    """`with EmulatorThread() as emu:` serves on `emu.base_url` until the block ends.

    `port=0` picks a free port. `emu.state` is the live state, safe to read from the
    caller's thread.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.host = host
        self.state = EmulatorState()
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fcm-emulator", daemon=True)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        return base_url(self.host, self.port)

    @property
    def token_uri(self) -> str:
        """What a service-account JSON's `token_uri` should be for this emulator."""
        return f"{self.base_url}{TOKEN_PATH}"

    def start(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("the FCM emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the FCM emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        self._thread.join(_STOP_TIMEOUT_S)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to start(); a thread has nowhere else to say it
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        runner = web.AppRunner(create_app(self.state), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
            self._port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()
