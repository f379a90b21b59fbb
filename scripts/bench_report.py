"""Shared by the benchmark scripts: the machine they ran on, and their section of
docs/BENCHMARKS.md (replaced between its markers, the rest of the file left alone)."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def machine() -> str:
    """One line: when, where, and how loaded the machine was when the run started."""
    load = os.getloadavg()[0]
    mem = psutil.virtual_memory().total / 2**30
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
            f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}; "
            f"load average {load:.1f} at the start (the machine is shared)")


def command() -> str:
    return "python " + " ".join(["scripts/" + Path(sys.argv[0]).name, *sys.argv[1:]])


def write_section(name: str, title: str, body: str) -> None:
    """Put `body` under `## title` in BENCHMARKS.md, between the markers of `name`."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote the '{title}' section of {DOC}")


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
