#!/usr/bin/env python3
"""One PostgreSQL and a Citus cluster (a coordinator and two workers) side by side, in one
run on this machine: what the cluster costs per request.

    .venv/bin/python scripts/bench_citus.py [--seconds 8] [--rounds 2] [--batches 1 100]
                                            [--deliveries 2000] [--no-write]

Both databases are served by the same PostgreSQL binaries with the same settings
(`tests/citus_cluster.py`: the Citus build of `scripts/citus`; the plain node loads no
Citus), each with `pg_stat_statements`. For each, `geopush serve` (one worker, sender off)
takes the load of `scripts/bench_ingest.py`'s generator (its fences, devices and walks),
1 and 100 pings per request, the two targets alternated, `--rounds` times. Then delivery:
`--deliveries` queued at once, drained by one `geopush serve` sender into
`geopush fcm-emulator`, on each target.

A 2-core machine shared by everything cannot show a speed-up, so the figures are costs
per request (per message for delivery):

- round trips: statements the database's entry node ran for geopush (pg_stat_statements'
  `calls` of the benchmark's database on the single node, or on the coordinator), and the
  statements the coordinator sent to the workers (their `calls`);
- CPU of the entry node's processes (postmaster and backends, /proc/<pid>/stat), of the
  workers', and of the geopush server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopush.store.database import _init_connection
from geopush.store.migrations import migrate
from scripts.bench_ingest import Bench, proc_cpu_s
from scripts.bench_report import command, machine, table, write_section
from scripts.bench_sender import free_port, start_senders, stop, wait_http
from tests.citus_cluster import Cluster, Node
from tests.outbox_fill import queue_deliveries

# Autovacuum off on every node: after a run's inserts it would bill its CPU to whichever
# run comes next (a node's CPU is counted whole).
STATS = {"shared_preload_libraries": "'citus,pg_stat_statements'",
         "pg_stat_statements.track": "top", "pg_stat_statements.max": "10000",
         "autovacuum": "off"}
PLAIN = {**STATS, "shared_preload_libraries": "'pg_stat_statements'"}


class NodeMeter:
    """Statements run in one database of one node, and the node's CPU, between readings."""

    def __init__(self, cluster: Cluster, node: Node, database: str) -> None:
        self.cluster, self.node, self.database = cluster, node, database
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.cluster.url(self.node))
        await self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def _postmaster(self) -> int:
        return int((self.node.data / "postmaster.pid").read_text().split()[0])

    def cpu(self) -> dict[int, float]:
        """CPU seconds of the postmaster (its reaped children's included) and of each live
        child (backends, Citus' maintenance daemon, the background processes)."""
        pm = self._postmaster()
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[int, float] = {}
        with contextlib.suppress(OSError):
            f = Path(f"/proc/{pm}/stat").read_text().rsplit(")", 1)[1].split()
            out[pm] = sum(int(x) for x in f[11:15]) / tick
        for child in psutil.Process(pm).children():
            out[child.pid] = proc_cpu_s([child.pid])
        return out

    async def calls(self) -> int:
        assert self.conn is not None
        return int(await self.conn.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)", self.database))

    async def reading(self) -> tuple[int, dict[int, float]]:
        return await self.calls(), self.cpu()

    @staticmethod
    def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(v - before.get(pid, 0.0) for pid, v in after.items())


class Target:
    """One database to measure: its entry node, the workers behind it (none on the plain
    PostgreSQL), and a `geopush serve` on it driven by bench_ingest's harness."""

    def __init__(self, name: str, url: str, entry: NodeMeter, workers: list[NodeMeter],
                 args: argparse.Namespace) -> None:
        self.name, self.url, self.entry, self.workers = name, url, entry, workers
        self.bench = Bench.__new__(Bench)
        self.bench.args = args
        self.bench.tmp = Path(tempfile.mkdtemp(prefix=f"gpbc{name}"))
        self.bench.dsn = url
        self.bench.proc = None
        self.bench.base = ""
        self.tokens = self.bench.tmp / "devices.json"
        self.server_pids: list[int] = []

    async def readings(self) -> list[tuple[int, dict[int, float]]]:
        return [await m.reading() for m in (self.entry, *self.workers)]

    async def measure(self, run: Any) -> dict[str, float]:
        """Run `run()` (blocking) and return what it cost on each side."""
        before = await self.readings()
        server0 = self.server_cpu()
        t = time.perf_counter()
        result = await run() if asyncio.iscoroutinefunction(run) else run()
        elapsed = time.perf_counter() - t
        server1 = self.server_cpu()
        after = await self.readings()
        (c0, e0), *w0 = before
        (c1, e1), *w1 = after
        return {**(result or {}), "elapsed": elapsed,
                "entry_calls": c1 - c0, "entry_cpu": NodeMeter.cpu_delta(e0, e1),
                "worker_calls": sum(b[0] - a[0] for a, b in zip(w0, w1, strict=True)),
                "worker_cpu": sum(NodeMeter.cpu_delta(a[1], b[1])
                                  for a, b in zip(w0, w1, strict=True)),
                "server_cpu_s": server1 - server0}

    def server_cpu(self) -> float:
        return proc_cpu_s(self.server_pids)


async def ingest_row(target: Target, batch: int) -> dict[str, float]:
    proc = target.bench.proc
    assert proc is not None
    server = psutil.Process(proc.pid)
    target.server_pids = [server.pid, *(p.pid for p in server.children(recursive=True))]
    r = await target.measure(lambda: target.bench.run_load(target.tokens, batch))
    n = max(1, int(r["requests"]))
    return {"requests/s": r["rps"], "pings/s": r["pings_per_s"], "errors": r["errors"],
            "requests": n, "entry_calls": r["entry_calls"] / n,
            "worker_calls": r["worker_calls"] / n,
            "entry_cpu_ms": r["entry_cpu"] * 1000 / n,
            "worker_cpu_ms": r["worker_cpu"] * 1000 / n,
            "server_cpu_ms": r["server_cpu_s"] * 1000 / n}


async def delivery_row(target: Target, n: int, emu: str, creds: Path) -> dict[str, float]:
    """`n` deliveries queued at once, drained by one sender process; after a probe message
    has gone (the sender is up, its OAuth token fetched), so start-up is not measured."""
    conn = await asyncpg.connect(target.url)
    await _init_connection(conn)
    await conn.execute("TRUNCATE deliveries")
    ps = start_senders(target.url, 1, emu, creds, target.bench.tmp, "aiohttp")
    try:
        await queue_deliveries(conn, 1, f"probe-{target.name}-")
        for _ in range(1200):
            if await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'"):
                break
            await asyncio.sleep(0.1)
        sender = psutil.Process(ps[0].pid)
        target.server_pids = [sender.pid, *(p.pid for p in sender.children(recursive=True))]

        async def drain() -> dict[str, float]:
            await queue_deliveries(conn, n, f"bench-{target.name}-")
            await conn.execute("NOTIFY geopush_outbox")
            while await conn.fetchval(
                    "SELECT count(*) FROM deliveries WHERE status = 'sent'") < n + 1:
                await asyncio.sleep(0.2)
            return {}

        r = await target.measure(drain)
        return {"messages/s": n / r["elapsed"], "entry_calls": r["entry_calls"] / n,
                "worker_calls": r["worker_calls"] / n,
                "entry_cpu_ms": r["entry_cpu"] * 1000 / n,
                "worker_cpu_ms": r["worker_cpu"] * 1000 / n,
                "server_cpu_ms": r["server_cpu_s"] * 1000 / n}
    finally:
        stop(ps)
        await conn.close()


def mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


async def harness(args: argparse.Namespace) -> None:
    started = machine()
    cluster = Cluster.start(STATS)
    single = cluster.start_plain("single", PLAIN)
    targets: list[Target] = []
    emu_proc = None
    try:
        admin = await asyncpg.connect(cluster.url(single))
        await admin.execute('CREATE DATABASE "bench"')
        await admin.close()
        plain_url = cluster.url(single, "bench")
        citus_url = await cluster.new_database()
        for url, distributed in ((plain_url, False), (citus_url, True)):
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn, distributed=distributed)
            finally:
                await conn.close()
        citus_db = citus_url.rsplit("/", 1)[1]
        meters = [NodeMeter(cluster, single, "bench"),
                  NodeMeter(cluster, cluster.coordinator, citus_db),
                  *(NodeMeter(cluster, w, citus_db) for w in cluster.workers)]
        for m in meters:
            await m.open()
        targets = [Target("postgresql", plain_url, meters[0], [], args),
                   Target("citus", citus_url, meters[1], meters[2:], args)]
        for t in targets:
            await t.bench.start(1)
            t.tokens.write_text(json.dumps(await t.bench.setup_data()))
            t.bench.run_load(t.tokens, 1, warm=True)
            print(f"{t.name}: set up, every device warmed", flush=True)
        ingest: dict[tuple[str, int], list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            for batch in args.batches:
                for t in targets if rnd % 2 == 0 else targets[::-1]:
                    r = await ingest_row(t, batch)
                    ingest.setdefault((t.name, batch), []).append(r)
                    print(f"round {rnd + 1}, {t.name}, {batch}/request: "
                          f"{r['requests/s']:,.0f} req/s, errors {r['errors']:.0f}, "
                          f"statements/request {r['entry_calls']:.2f} (+{r['worker_calls']:.2f}"
                          f" on workers), entry CPU {r['entry_cpu_ms']:.2f} ms, workers "
                          f"{r['worker_cpu_ms']:.2f} ms, geopush {r['server_cpu_ms']:.2f} ms"
                          f" per request; load average {os.getloadavg()[0]:.1f}", flush=True)
        for t in targets:
            t.bench.stop()
        port = free_port()
        creds = targets[0].bench.tmp / "sa.json"
        emu_proc = subprocess.Popen(
            [sys.executable, "-m", "geopush", "fcm-emulator", "--port", str(port),
             "--write-credentials", str(creds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        emu = f"http://127.0.0.1:{port}"
        await wait_http(f"{emu}/healthz")
        delivery: dict[str, list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            for t in targets if rnd % 2 == 0 else targets[::-1]:
                r = await delivery_row(t, args.deliveries, emu, creds)
                delivery.setdefault(t.name, []).append(r)
                print(f"round {rnd + 1}, {t.name}, delivery: {r['messages/s']:,.0f} msg/s, "
                      f"statements/message {r['entry_calls']:.2f} (+{r['worker_calls']:.2f} "
                      f"on workers), entry CPU {r['entry_cpu_ms']:.2f} ms, workers "
                      f"{r['worker_cpu_ms']:.2f} ms, sender {r['server_cpu_ms']:.2f} ms per"
                      f" message; load average {os.getloadavg()[0]:.1f}", flush=True)
        for m in meters:
            await m.close()
    finally:
        for t in targets:
            t.bench.stop()
            shutil.rmtree(t.bench.tmp, ignore_errors=True)
        if emu_proc is not None:
            emu_proc.terminate()
            emu_proc.wait(timeout=10)
        cluster.stop()
    write(args, started, ingest, delivery)


def write(args: argparse.Namespace, started: str,
          ingest: dict[tuple[str, int], list[dict[str, float]]],
          delivery: dict[str, list[dict[str, float]]]) -> None:
    keys = ["entry_calls", "worker_calls", "entry_cpu_ms", "worker_cpu_ms", "server_cpu_ms"]
    rows: list[list[object]] = []
    for batch in args.batches:
        runs = {name: ingest[name, batch] for name in ("postgresql", "citus")}
        for name, rs in runs.items():
            rows.append([f"ingest, {batch}/request", name, mean(rs, "requests/s"),
                         *(f"{mean(rs, k):.2f}" for k in keys)])
        p, c = runs["postgresql"], runs["citus"]
        rows.append([f"ingest, {batch}/request", "**citus ÷ postgresql**",
                     f"{mean(c, 'requests/s') / mean(p, 'requests/s'):.2f}",
                     f"{mean(c, 'entry_calls') / mean(p, 'entry_calls'):.2f}", "—",
                     f"{mean(c, 'entry_cpu_ms') / mean(p, 'entry_cpu_ms'):.2f}", "—",
                     f"{mean(c, 'server_cpu_ms') / mean(p, 'server_cpu_ms'):.2f}"])
    for name in ("postgresql", "citus"):
        rs = delivery[name]
        rows.append(["delivery (per message)", name, mean(rs, "messages/s"),
                     *(f"{mean(rs, k):.2f}" for k in keys)])
    p, c = delivery["postgresql"], delivery["citus"]
    rows.append(["delivery (per message)", "**citus ÷ postgresql**",
                 f"{mean(c, 'messages/s') / mean(p, 'messages/s'):.2f}",
                 f"{mean(c, 'entry_calls') / mean(p, 'entry_calls'):.2f}", "—",
                 f"{mean(c, 'entry_cpu_ms') / mean(p, 'entry_cpu_ms'):.2f}", "—",
                 f"{mean(c, 'server_cpu_ms') / mean(p, 'server_cpu_ms'):.2f}"])
    body = "\n".join([
        f"Run: {started}; load average {os.getloadavg()[0]:.1f} at the end.", "", "```",
        command(), "```", "",
        "The same PostgreSQL 18 binaries and settings (`tests/citus_cluster.py`: fsync off,"
        " all nodes on this machine; autovacuum off, so that no run pays for the last one's"
        " inserts), one plain PostgreSQL beside a Citus 14.0.1 coordinator"
        " with two workers (4 shards per table). `geopush serve` (1 worker, sender off) on"
        f" each, `scripts/bench_ingest.py`'s load ({args.fences:,} circle fences,"
        f" {args.devices:,} walking devices, {args.away:.0%} of them far from every fence,"
        f" {args.clients} clients, no active offer,"
        f" {args.seconds:g} s per run), the two alternated, {args.rounds} rounds (means"
        f" below). Delivery: {args.deliveries:,} deliveries queued at once, drained by one"
        " sender process (`aiohttp` transport) into `geopush fcm-emulator`; the 2 statements"
        " that queue them are in the count. Statements: pg_stat_statements `calls` in the"
        " benchmark's database, on the node geopush connects to (the plain PostgreSQL, or"
        " the coordinator) and on the workers (what the coordinator sent them). CPU: user +"
        " system of each node's postmaster and its children (/proc/<pid>/stat), and of the"
        " geopush server (or sender) process. Requests/s on a shared 2-core machine say"
        " little: the cluster's three nodes, geopush and the load share the same cores.", "",
        table(["work", "database", "requests (messages)/s", "statements per request at the"
               " entry node", "statements per request on the workers", "entry node CPU ms"
               " per request", "workers' CPU ms per request", "geopush CPU ms per request"],
              rows),
    ])
    print(body)
    if not args.no_write:
        write_section("citus", "One PostgreSQL and a Citus cluster, per request —"
                      " `scripts/bench_citus.py`", body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--fences", type=int, default=10_000)  # 20 offers × 500
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--away", type=float, default=0.8,
                    help="share of devices far from every fence (their batches are the"
                         " common one: no fence near)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    # bench_ingest's harness reads these.
    args.code, args.profile = None, False
    asyncio.run(harness(args))


if __name__ == "__main__":
    main()
