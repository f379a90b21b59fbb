"""The `geopush` command: serve, demo, migrate, keys, import, segments, insights,
fcm-emulator."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from geopush.codes import Role
from geopush.config import Config, ConfigError, load_config
from geopush.timefmt import format_ts


def _config(path: str | None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    try:
        return load_config(path, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_pool(config: Config, job: Any) -> Any:
    from geopush.store.database import create_pool, resolve_database_url
    from geopush.store.migrations import MigrationChanged, migrate

    url = await asyncio.get_running_loop().run_in_executor(None, resolve_database_url, config)
    pool = await create_pool(url, 4)
    try:
        async with pool.acquire() as conn:
            try:
                await migrate(conn, distributed=config.database.distributed)
            except MigrationChanged as exc:
                raise click.ClickException(str(exc)) from None
        return await job(pool)
    finally:
        await pool.close()


LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                          case_sensitive=False)


@click.group()
@click.option("--log-level", type=LOG_LEVELS, default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """geopush: location pings in, store visits out, offers pushed through FCM."""
    from geopush.logs import setup_logging

    ctx.obj = {"log_level": log_level.upper()}
    setup_logging(log_level.upper())


def _serve_worker(config: Config, url: str, host: str, port: int, reuse_port: bool,
                  log_level: str) -> None:
    from aiohttp import web

    from geopush.app import create_app
    from geopush.logs import setup_logging
    from geopush.store.migrations import MigrationChanged

    # Spawned workers start with fresh logging: the level must be handed over.
    setup_logging(log_level)
    if config.server.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # run_app's loop is libuv's
    try:
        web.run_app(create_app(config, database_url=url), host=host, port=port,
                    reuse_port=reuse_port, print=None, access_log=None,
                    shutdown_timeout=config.server.shutdown_timeout_s)
    except MigrationChanged as exc:
        sys.exit(f"geopush: not started: {exc}")


@main.command()
@click.option("--config", "config_path", type=click.Path(), default=None)
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--log-level", type=LOG_LEVELS, default=None,
              help="Overrides the level given before the command.")
@click.pass_context
def serve(ctx: click.Context, config_path: str | None, host: str | None, port: int | None,
          workers: int | None, log_level: str | None) -> None:
    """Run the HTTP service (and, unless disabled, the sender and sweepers)."""
    level = (log_level or (ctx.obj or {}).get("log_level") or "INFO").upper()
    server: dict[str, Any] = {}
    for key, value in (("host", host), ("port", port), ("workers", workers)):
        if value is not None:
            server[key] = value
    config = _config(config_path, {"server": server} if server else None)
    from geopush.store.database import resolve_database_url

    url = resolve_database_url(config)
    # 0: one worker per core. Ingest is CPU-bound per process (one event loop), so a
    # process per core is what uses the machine; PostgreSQL on the same host shares them.
    n = config.server.workers or os.cpu_count() or 1
    click.echo(f"geopush listening on http://{config.server.host}:{config.server.port}"
               f" ({n} worker{'s' if n > 1 else ''})", err=True)
    if n == 1:
        _serve_worker(config, url, config.server.host, config.server.port, False, level)
        return
    _serve_workers(config, url, n, level)


def _serve_workers(config: Config, url: str, n: int, log_level: str) -> None:
    """N spawned workers on one port (SO_REUSEPORT), with one metrics view across them."""
    from geopush.metrics import MULTIPROC_ENV

    # Each worker writes its metric values under this directory; any worker's /metrics
    # then sums them all. A directory given by the operator is kept, ours is removed.
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="geopush-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_serve_worker,
                         args=(config, url, config.server.host, config.server.port, True,
                               log_level))
             for _ in range(n)]
    for p in procs:
        p.start()

    def stop_workers(*_: object) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()  # each worker shuts down gracefully on SIGTERM

    signal.signal(signal.SIGTERM, stop_workers)
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        stop_workers()
        for p in procs:
            p.join()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@click.option("--config", "config_path", type=click.Path(), default=None)
def migrate(config_path: str | None) -> None:
    """Apply pending schema migrations."""
    from geopush.store.migrations import migrate as run

    config = _config(config_path)

    async def job(pool: Any) -> list[str]:
        async with pool.acquire() as conn:
            return await run(conn, distributed=config.database.distributed)

    asyncio.run(_with_pool(config, job))
    click.echo("schema up to date")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default="")
@click.option("--config", "config_path", type=click.Path(), default=None)
def keys_create(role: str, name: str, config_path: str | None) -> None:
    """Make an API key; it is printed once and stored only hashed."""
    from geopush.store.keys import create_key

    config = _config(config_path)
    created = asyncio.run(_with_pool(config, lambda pool: create_key(pool, Role(role), name)))
    click.echo(created["key"])
    click.echo(f"id={created['id']} role={created['role']}", err=True)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--config", "config_path", type=click.Path(), default=None)
def keys_revoke(key_id: str, config_path: str | None) -> None:
    """Revoke a key by its id; every running process refuses it within a second."""
    import uuid

    from geopush.store.keys import revoke_key

    try:
        ident = uuid.UUID(key_id)
    except ValueError:
        raise click.BadParameter("not a key id (a UUID)", param_hint="KEY_ID") from None
    config = _config(config_path)
    row = asyncio.run(_with_pool(config, lambda pool: revoke_key(pool, ident)))
    if row is None:
        raise click.ClickException(f"no key {ident}")
    click.echo(f"revoked {row['id']} ({row['role']}) at {format_ts(row['revoked_at'])}")


@main.command("import")
@click.argument("kind", type=click.Choice(["stores", "geofences", "customers", "transactions"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(), default=None)
def import_(kind: str, file: str, config_path: str | None) -> None:
    """Import a file (CSV for stores, customers, transactions; GeoJSON for geofences)."""
    config = _config(config_path)
    result = asyncio.run(_with_pool(config, lambda pool: _run_import(pool, config, kind,
                                                                      Path(file))))
    import json

    click.echo(json.dumps(result, indent=2, default=str))


async def _run_import(pool: Any, config: Config, kind: str, path: Path) -> dict[str, Any]:
    """The import's answer, with a progress bar over the bytes read.

    The CLI is the operator's own tool, so `[limits] max_import_bytes` (an HTTP limit) does
    not apply. A file that cannot be imported ends the command with its reason.
    """
    import contextlib

    from tqdm import tqdm

    from geopush.crm.csv_stream import file_chunks
    from geopush.crm.imports import CSV_KINDS, ImportFailed, import_geofences_file, import_stream

    size = path.stat().st_size
    # disable=None: no bar when stderr is not a terminal (scripts, tests).
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"import {kind}",
              disable=None) as progress:
        try:
            if kind != "geofences" and kind not in CSV_KINDS:
                raise ImportFailed(f"unknown import kind {kind!r}")
            async with contextlib.aclosing(file_chunks(path, progress)) as chunks:
                if kind == "geofences":
                    return await import_geofences_file(pool, config, chunks)
                result = await import_stream(pool, config, kind, chunks)
        except ImportFailed as exc:
            raise click.ClickException(f"{path}: {exc}; nothing was imported") from None
    if kind == "transactions":
        # As after an import over HTTP: new baskets, fresh rules and recommendations (here in
        # this process, which serves nothing else, and the command waits for them).
        from datetime import UTC, datetime

        from geopush.insights.basket_rules import recompute_rules

        result["basket_rules"] = await recompute_rules(pool, config, datetime.now(UTC))
    return result


@main.group()
def segments() -> None:
    """FRAT segments."""


@segments.command("recompute")
@click.option("--config", "config_path", type=click.Path(), default=None)
def segments_recompute(config_path: str | None) -> None:
    """Recompute every customer's FRAT scores and segment now."""
    import json
    from datetime import UTC, datetime

    from geopush.crm.segments import recompute_segments

    config = _config(config_path)
    result = asyncio.run(_with_pool(
        config, lambda pool: recompute_segments(pool, config, datetime.now(UTC))))
    click.echo(json.dumps(result, indent=2, default=str))


@main.group()
def insights() -> None:
    """Basket analysis: association rules, recommended categories."""


@insights.command("recompute")
@click.option("--config", "config_path", type=click.Path(), default=None)
def insights_recompute(config_path: str | None) -> None:
    """Mine the basket rules now and rewrite every customer's recommended categories."""
    import json
    from datetime import UTC, datetime

    from tqdm import tqdm

    from geopush.insights.basket_rules import recompute_rules

    config = _config(config_path)
    # The operator's own process mines (nothing else is served here), with a progress bar
    # over the search's top-level branches; disable=None: no bar when not on a terminal.
    with tqdm(desc="mining baskets", unit="item", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        result = asyncio.run(_with_pool(
            config, lambda pool: recompute_rules(pool, config, datetime.now(UTC), progress)))
    click.echo(json.dumps(result, indent=2, default=str))


@main.command("fcm-emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8085, show_default=True)
@click.option("--write-credentials", type=click.Path(dir_okay=False), default=None,
              help="write a service-account JSON whose token_uri is this emulator")
@click.option("--project-id", default="geopush-emulator", show_default=True)
def fcm_emulator(host: str, port: int, write_credentials: str | None, project_id: str) -> None:
    """Run the local FCM stand-in (OAuth token endpoint, messages:send, GET /messages)."""
    from geopush.emulator.server import run

    run(host=host, port=port,
        credentials_path=Path(write_credentials) if write_credentials else None,
        project_id=project_id)


@main.command()
@click.option("--port", type=int, default=8080, show_default=True,
              help="geopush's port (another free one if taken)")
@click.option("--duration", type=float, default=0.0, show_default=True,
              help="seconds to run; 0 = until Ctrl-C")
@click.option("--speedup", type=click.FloatRange(1, 200), default=10.0, show_default=True,
              help="how much faster than real time the traces are replayed")
@click.option("--phones", type=click.IntRange(5, 200), default=15, show_default=True)
@click.option("--data-dir", default=".geopush", show_default=True)
def demo(port: int, duration: float, speedup: float, phones: int, data_dir: str) -> None:
    """Everything on this machine: PostgreSQL, the FCM emulator, stores, phones on real traces."""
    from geopush.demo import run_demo

    sys.exit(run_demo(port=port, duration=duration, data_dir=data_dir, speedup=speedup,
                      phones=phones))


if __name__ == "__main__":
    main()
