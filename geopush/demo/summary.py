"""The demo's live summary: a block of lines redrawn in place (ANSI) once a second.

Each line comes from a panel: a function of one `Snapshot` (what `/metrics`, the ops
time series, the segments and the phones' own activity said this round) returning lines.
A new part of the product adds a panel to `PANELS` (or registers one when its API exists,
as loyalty does), and the summary shows it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

from geopush.demo.phones import Activity


@dataclass
class Snapshot:
    elapsed_s: float
    metrics: dict[str, dict[tuple[tuple[str, str], ...], float]]
    latency: dict[str, Any]
    segments: dict[str, int]
    activity: Activity
    pings_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def total(self, name: str, **match: str) -> float:
        return sum(v for labels, v in self.metrics.get(name, {}).items()
                   if all((k, w) in labels for k, w in match.items()))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for labels, v in self.metrics.get(name, {}).items():
            d = dict(labels)
            if all(d.get(k) == w for k, w in match.items()):
                out[d.get(label, "")] += v
        return {k: v for k, v in out.items() if v}


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _n(x: float) -> str:
    return f"{int(x):,}"


def _reasons(d: dict[str, float], limit: int = 4) -> str:
    top = sorted(d.items(), key=lambda kv: -kv[1])[:limit]
    return ", ".join(f"{k or '–'} {_n(v)}" for k, v in top)


def _secs(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def pings_panel(s: Snapshot) -> list[str]:
    rejected = s.by("geopush_pings_total", "reason", result="rejected")
    line = (f"pings      {_n(s.total('geopush_pings_total', result='accepted'))} accepted"
            f" ({s.pings_per_s:.1f}/s)")
    if rejected:
        line += f"   rejected {_n(sum(rejected.values()))}: {_reasons(rejected, 3)}"
    return [line]


def visits_panel(s: Snapshot) -> list[str]:
    ev = s.by("geopush_events_total", "type")
    return ["visits     " + "  ".join(f"{t} {_n(ev.get(t, 0))}"
                                      for t in ("enter", "dwell", "exit"))]


def decisions_panel(s: Snapshot) -> list[str]:
    out = s.by("geopush_decisions_total", "outcome")
    suppressed = s.by("geopush_decisions_total", "reason", outcome="suppressed")
    line = (f"decisions  queued {_n(out.get('queued', 0))}  control {_n(out.get('control', 0))}"
            f"  suppressed {_n(out.get('suppressed', 0))}")
    return [line] + ([f"           suppressed by: {_reasons(suppressed, 5)}"] if suppressed else [])


def pushes_panel(s: Snapshot) -> list[str]:
    st = s.by("geopush_deliveries_total", "status")
    ended = {f"{k}": v for k, v in s.by("geopush_deliveries_total", "reason",
                                        status="cancelled").items()}
    failed = s.by("geopush_deliveries_total", "reason", status="failed")
    a = s.activity
    line = (f"pushes     sent {_n(st.get('sent', 0))}  at the emulator {_n(a.pushes_seen)}"
            f"  opened {_n(a.opened)}  redeemed {_n(a.redeemed)}")
    extra = []
    if failed:
        extra.append(f"failed {_reasons(failed)}")
    if ended:
        extra.append(f"cancelled {_reasons(ended)}")
    return [line] + ([f"           {'; '.join(extra)}"] if extra else [])


def latency_panel(s: Snapshot) -> list[str]:
    w = s.latency.get("window", {})
    return [f"latency    event → send p50 {_secs(w.get('p50'))}  p99 {_secs(w.get('p99'))}"
            f"  (last hour, {_n(w.get('count') or 0)} sent)"]


def segments_panel(s: Snapshot) -> list[str]:
    if not s.segments:
        return []
    return ["segments   " + "  ".join(f"{k} {_n(v)}" for k, v in s.segments.items())]


def shoppers_panel(s: Snapshot) -> list[str]:
    return [f"shoppers   {_n(s.activity.purchases)} purchases at the till (they make"
            f" conversions), visits seen by phones: {_n(sum(s.activity.events.values()))}"]


def loyalty_panel(s: Snapshot) -> list[str]:
    loyalty = s.extra.get("loyalty")
    if not loyalty:
        return []
    return ["loyalty    " + "  ".join(f"{k} {v}" for k, v in loyalty.items())]


def service_panel(s: Snapshot) -> list[str]:
    """The service story (SPEC section 14): answers, the store's alert, the recovery."""
    service = s.extra.get("service")
    if not service:
        return []
    lines = ["service    " + "  ".join(f"{k} {v}" for k, v in service.items()
                                       if k in ("answers", "case"))]
    for k in ("store alert", "recovery push", "returned"):
        if k in service:
            lines.append(f"  {k}: {service[k]}")
    return lines


def learning_panel(s: Snapshot) -> list[str]:
    """The learning story (SPEC section 15): preferences given, a VIP greeted by name."""
    learning = s.extra.get("learning")
    if not learning:
        return []
    return ["learning"] + [f"  {k}: {v}" for k, v in learning.items()]


Panel = Callable[[Snapshot], list[str]]
PANELS: list[Panel] = [pings_panel, visits_panel, decisions_panel, pushes_panel,
                       latency_panel, segments_panel, shoppers_panel, loyalty_panel,
                       service_panel, learning_panel]


class Screen:
    """Writes the summary: redrawn in place on a terminal, as plain blocks otherwise."""

    def __init__(self, header: list[str], out: TextIO | None = None,
                 plain_every_s: float = 10.0) -> None:
        self.header = header
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._drawn = 0
        self.last: Snapshot | None = None

    def show(self, snapshot: Snapshot, panels: list[Panel] | None = None) -> None:
        self.last = snapshot
        lines = [*self.header, ""]
        for panel in panels or PANELS:
            lines += panel(snapshot)
        if self.tty:
            width = shutil.get_terminal_size((120, 40)).columns
            # Back to the top of the block, then each line cleared to its end.
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            body = "".join(f"{line[:width]}\x1b[K\n" for line in lines)
            self.out.write(up + body + "\x1b[J")
            self._drawn = len(lines)
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            stamp = f"--- after {snapshot.elapsed_s:.0f} s"
            self.out.write("\n".join([stamp, *lines[len(self.header) + 1:]]) + "\n")
        self.out.flush()

    def final(self) -> None:
        """The last figures once more where they would otherwise be lost (not a terminal)."""
        if not self.tty and self.last is not None:
            self._last_plain = 0.0
            self.show(self.last)
