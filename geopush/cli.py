"""The `geopush` command: serve, demo, migrate, keys, import, segments, fcm-emulator."""

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


def _config(path: str | None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    try:
        return load_config(path, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_pool(config: Config, job: Any) -> Any:
    from geopush.store.database import create_pool, resolve_database_url
    from geopush.store.migrations import migrate

    url = await asyncio.get_running_loop().run_in_executor(None, resolve_database_url, config)
    pool = await create_pool(url, 4)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        return await job(pool)
    finally:
        await pool.close()


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """geopush: location pings in, store visits out, offers pushed through FCM."""
    from geopush.logs import setup_logging

    setup_logging(log_level)


def _serve_worker(config: Config, url: str, host: str, port: int, reuse_port: bool) -> None:
    from aiohttp import web

    from geopush.app import create_app
    from geopush.logs import setup_logging

    setup_logging()
    web.run_app(create_app(config, database_url=url), host=host, port=port,
                reuse_port=reuse_port, print=None, access_log=None,
                shutdown_timeout=config.server.shutdown_timeout_s)


@main.command()
@click.option("--config", "config_path", type=click.Path(), default=None)
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--workers", type=int, default=None)
def serve(config_path: str | None, host: str | None, port: int | None,
          workers: int | None) -> None:
    """Run the HTTP service (and, unless disabled, the sender and sweepers)."""
    server: dict[str, Any] = {}
    for key, value in (("host", host), ("port", port), ("workers", workers)):
        if value is not None:
            server[key] = value
    config = _config(config_path, {"server": server} if server else None)
    from geopush.store.database import resolve_database_url

    url = resolve_database_url(config)
    n = config.server.workers
    click.echo(f"geopush listening on http://{config.server.host}:{config.server.port}"
               f" ({n} worker{'s' if n > 1 else ''})", err=True)
    if n == 1:
        _serve_worker(config, url, config.server.host, config.server.port, False)
        return
    _serve_workers(config, url, n)


def _serve_workers(config: Config, url: str, n: int) -> None:
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
                         args=(config, url, config.server.host, config.server.port, True))
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
            return await run(conn)

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
    from geopush.api.keys import create_key

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

    from geopush.api.keys import revoke_key

    try:
        ident = uuid.UUID(key_id)
    except ValueError:
        raise click.BadParameter("not a key id (a UUID)", param_hint="KEY_ID") from None
    config = _config(config_path)
    row = asyncio.run(_with_pool(config, lambda pool: revoke_key(pool, ident)))
    if row is None:
        raise click.ClickException(f"no key {ident}")
    click.echo(f"revoked {row['id']} ({row['role']}) at {row['revoked_at'].isoformat()}")


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
            if kind == "geofences":
                data = await asyncio.to_thread(path.read_bytes)
                progress.update(len(data))
                return await import_geofences_file(pool, config, data)
            if kind not in CSV_KINDS:
                raise ImportFailed(f"unknown import kind {kind!r}")
            async with contextlib.aclosing(file_chunks(path, progress)) as chunks:
                return await import_stream(pool, config, kind, chunks)
        except ImportFailed as exc:
            raise click.ClickException(f"{path}: {exc}; nothing was imported") from None


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
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--duration", type=float, default=90.0, show_default=True,
              help="seconds to keep running after the scenario; 0 = until Ctrl-C")
@click.option("--data-dir", default=".geopush", show_default=True)
def demo(port: int, duration: float, data_dir: str) -> None:
    """Everything on this machine: PostgreSQL, the FCM emulator, stores, walking phones."""
    from geopush.demo import run_demo

    sys.exit(run_demo(port=port, duration=duration, data_dir=data_dir))


if __name__ == "__main__":
    main()
