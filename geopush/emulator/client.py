"""A small async client of the emulator's control API, for tests and `geopush demo`."""

from __future__ import annotations

from typing import Any

import aiohttp


class EmulatorClient:
    """`async with EmulatorClient(base_url) as fcm:` then `await fcm.messages(token)`."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EmulatorClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Any:
        if self._session is None:
            raise RuntimeError("use EmulatorClient in `async with`")
        async with self._session.request(
            method, f"{self.base_url}{path}", params=params, json=json
        ) as response:
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json() if response.status != 204 else None

    async def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        """Messages received (oldest first), for one token or all."""
        params = {"token": token} if token is not None else None
        return (await self._call("GET", "/messages", params=params))["messages"]

    async def attempts(self, token: str | None = None) -> list[dict[str, Any]]:
        """Every `messages:send` request, whatever its answer (oldest first)."""
        params = {"token": token} if token is not None else None
        return (await self._call("GET", "/attempts", params=params))["attempts"]

    async def add_failure(
        self,
        token: str,
        error: str | None = None,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Make `token` (or `"*"`, every token) fail; see `geopush.emulator.failures`."""
        rule = {
            "token": token,
            "error": error,
            "times": times,
            "retry_after": retry_after,
            "delay_s": delay_s,
            "drop": drop,
        }
        await self._call("POST", "/failures", json=rule)

    async def clear_failures(self) -> None:
        await self._call("DELETE", "/failures")

    async def clear_messages(self) -> None:
        await self._call("DELETE", "/messages")

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def stats(self) -> dict[str, int]:
        return await self._call("GET", "/stats")
