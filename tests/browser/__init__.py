"""A real browser for the page tests: Debian's chromium driven by Playwright.

Playwright cannot download its own browser build here, so it launches /usr/bin/chromium
(scripts/test installs it with apt-get when missing). Every page a test opens records its
console errors and uncaught exceptions; a test asserts there are none. Screenshots go to
one artifacts directory per run, printed at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS: list[Path] = []  # the directory of this run, once a test made it


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class WatchedPage:
    """A page and what went wrong in it: console errors, page errors, failed requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, req: Any) -> None:
        # The composer's foresight aborts its request in flight when the offer changes:
        # that is the design (a newer edit wins), not a failure.
        if "/v1/offers/preview" in req.url and "ERR_ABORTED" in str(req.failure):
            return
        self.errors.append(f"requestfailed: {req.url} {req.failure}")

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "assert"):
            self.errors.append(f"console.{msg.type}: {msg.text} @ {msg.location}")


@asynccontextmanager
async def watched_page(browser: Browser, width: int = 1280, height: int = 800
                       ) -> AsyncIterator[WatchedPage]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    try:
        yield WatchedPage(await context.new_page())
    finally:
        await context.close()


def artifacts_dir(base: Path) -> Path:
    path = base / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    if path not in ARTIFACTS:
        ARTIFACTS.append(path)
    return path


async def sign_in(page: Any, url: str, key: str) -> None:
    """Open a page (the console, the dashboard) and give it its key, as a user does; wait
    until it has loaded its data."""
    await page.goto(url)
    await page.fill("#key", key)
    await page.press("#key", "Enter")
    await page.wait_for_selector("body[data-loaded='1']")
