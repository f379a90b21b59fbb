"""Fault: `geopush serve` is SIGKILLed and leaves its embedded PostgreSQL running.

The next start reuses that server and says so; when that geopush stops normally, the
server stops with it (the killed process's handle on it does not keep it running).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.test_multiprocess import _free_port, _wait_ready


def _serve(tmp_path: Path, data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GEOPUSH_")},
        "GEOPUSH_DATABASE_URL": "",  # the embedded PostgreSQL under [data] dir
        "GEOPUSH_DATA_DIR": str(data_dir),
        "GEOPUSH_SERVER_PORT": str(port),
        "GEOPUSH_SERVER_RUN_SENDER": "false",
        "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "geopush", "serve"], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=out)
    return proc, f"http://127.0.0.1:{port}"


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def _said(log: Path, words: str) -> str:
    lines = [line for line in log.read_text().splitlines() if words in line]
    assert lines, f"no line with {words!r} in:\n{log.read_text()}"
    return lines[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_postgres_left_by_a_killed_geopush_is_reused_said_so_and_stopped_later(
    tmp_path: Path, report: Callable[[str], None],
) -> None:
    # Not under tmp_path: PostgreSQL runs as its own user when the tests run as root, and
    # pytest's base directory is closed to other users (as the shared server's fixture).
    data_dir = Path(tempfile.mkdtemp(prefix="gpkill"))
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    postgres: psutil.Process | None = None
    try:
        first, url = _serve(tmp_path, data_dir, first_log)
        await _wait_ready(url, first, within_s=180)  # initdb on first start
        started = _said(first_log, "embedded PostgreSQL: started")
        postgres = psutil.Process(_postmaster_pid(data_dir))

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert postgres.is_running()  # left behind

        second, url = _serve(tmp_path, data_dir, second_log)
        await _wait_ready(url, second, within_s=120)
        reused = _said(second_log, "embedded PostgreSQL: reusing")
        assert f"pid {postgres.pid}" in reused
        assert str(first.pid) in reused  # names the process that left it running
        assert _postmaster_pid(data_dir) == postgres.pid

        second.send_signal(signal.SIGTERM)  # a normal stop: the last handle closes
        second.wait(timeout=60)
        postgres.wait(timeout=60)
        stopped = not postgres.is_running()
        report(f"\nembedded PostgreSQL after SIGKILL: first start {started!r}; second start"
               f" {reused!r}; stopped with the second geopush: {stopped}")
        assert stopped
    finally:
        for proc in psutil.Process().children(recursive=True):
            if "geopush" in " ".join(proc.cmdline()):
                proc.kill()
        if postgres is not None and postgres.is_running():
            postgres.terminate()
        shutil.rmtree(data_dir, ignore_errors=True)
