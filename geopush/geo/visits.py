"""The visit state machine of SPEC section 3: accepted pings in, enter/dwell/exit events out.

Pure: the caller loads the device's state, passes the accepted pings of a batch (each with the
geofences that contain it and those within the exit buffer, from `GeofenceIndex.locate`) and
stores the state it gets back. The input state is never mutated, so a failed transaction can
simply be retried with the state it started from.

Per step, in order: (1) a gap longer than `visit_timeout_s` closes every open visit with an
exit stamped at the previous ping's ts; (2) an open visit exits when the point is farther than
the buffer outside its geofence; (3) a geofence containing the point and not open is entered;
(4) an open visit fires its dwell once ts − entered_at ≥ dwell_s. So within one ping exits come
before enters, then dwells; within one kind events are ordered by geofence id, so the output is
deterministic. "Inside G" in rules 2 and 4 is the visit state (SPEC words the point's position
explicitly where it matters), so a ping in the buffer band keeps the visit open and may fire its
dwell; `OpenVisit.last_inside` records whether the last ping was really inside, for the
background sweeper.

Rule 3 has one bound beyond SPEC's words (SPEC section 10: what one device can make geopush
store is bounded): at most `max_enters_per_hour` enters in any 3600 s of the device's own
time. Zig-zagging across a fence edge cannot then mint thousands of visits (and decisions);
an enter over the bound does not happen, the device stays outside, and a later ping inside
enters once the hour frees a place. Device time, not server time, because backdated pings
would otherwise be free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from geopush.codes import EventType


@dataclass
class OpenVisit:
    """A device inside a geofence (state *inside*, SPEC section 3)."""

    geofence_id: str
    entered_at: datetime
    dwell_fired: bool
    # The device's last ping was inside the geofence, not merely in its exit buffer: the
    # background sweeper fires dwell for phones that stop sending only when this is true.
    last_inside: bool


@dataclass
class DeviceVisits:
    """One device's visit state: its last accepted ping's ts and its open visits by geofence."""

    last_ts: datetime | None
    open: dict[str, OpenVisit]
    # Device times of the enters within the last hour of device time (the enter bound).
    recent_enters: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class VisitEvent:
    type: EventType
    geofence_id: str
    ts: datetime
    # An exit of a visit that had its dwell: what a feedback request answers (SPEC 14).
    after_dwell: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class VisitRules:
    """The `[geo]` visit settings of SPEC section 3."""

    visit_timeout_s: float = 3_600
    exit_buffer_m: float = 20
    max_enters_per_hour: int = 60  # 0: no bound


@dataclass(frozen=True)
class Step:
    """One accepted ping: its ts, the geofences containing it, those within the exit buffer."""

    ts: datetime
    inside: frozenset[str]
    near: frozenset[str]


def advance(
    state: DeviceVisits,
    steps: Sequence[Step],
    dwell_s: Mapping[str, int],
    rules: VisitRules,
) -> tuple[DeviceVisits, list[VisitEvent]]:
    """Run the accepted pings of a batch (in ts order) through the state machine.

    `dwell_s` maps every live (existing and enabled) geofence to its dwell time: open visits of
    geofences missing from it are closed silently, as SPEC says for disabled or deleted
    geofences, and geofences missing from it are never entered. Raises ValueError when the
    steps are not strictly after `state.last_ts` and each other (the filters guarantee it).
    """
    open_visits = {gid: replace(visit) for gid, visit in state.open.items() if gid in dwell_s}
    last_ts = state.last_ts
    enters = _EnterBudget(rules.max_enters_per_hour, list(state.recent_enters))
    events: list[VisitEvent] = []
    for step in steps:
        if last_ts is not None and step.ts <= last_ts:
            raise ValueError(f"steps must be in strictly increasing ts order after {last_ts}")
        if last_ts is not None and (step.ts - last_ts).total_seconds() > rules.visit_timeout_s:
            events += _close_all(open_visits, last_ts)
        events += _step(open_visits, step, dwell_s, enters)
        last_ts = step.ts
    return DeviceVisits(last_ts=last_ts, open=open_visits,
                        recent_enters=tuple(enters.recent)), events


class _EnterBudget:
    """The enter bound: at most `limit` enters in any 3600 s of device time."""

    def __init__(self, limit: int, recent: list[datetime]) -> None:
        self.limit, self.recent = limit, recent

    def take(self, ts: datetime) -> bool:
        if self.limit <= 0:
            return True
        self.recent = [t for t in self.recent if (ts - t).total_seconds() < _HOUR_S]
        if len(self.recent) >= self.limit:
            return False
        self.recent.append(ts)
        return True


_HOUR_S = 3600.0


def _close_all(open_visits: dict[str, OpenVisit], at: datetime) -> list[VisitEvent]:
    """Rule 1: the device went silent too long; its visits ended at its last ping."""
    events = [VisitEvent(EventType.EXIT, gid, at, after_dwell=open_visits[gid].dwell_fired)
              for gid in sorted(open_visits)]
    open_visits.clear()
    return events


def _step(
    open_visits: dict[str, OpenVisit], step: Step, dwell_s: Mapping[str, int],
    enters: _EnterBudget,
) -> list[VisitEvent]:
    """Rules 2-4 for one ping, mutating `open_visits` (a private copy)."""
    near = step.near | step.inside  # containment implies nearness, whatever the caller passed
    events: list[VisitEvent] = []
    for gid in sorted(open_visits):
        if gid not in near:
            closed = open_visits.pop(gid)
            events.append(VisitEvent(EventType.EXIT, gid, step.ts,
                                     after_dwell=closed.dwell_fired))
    for gid in sorted(step.inside):
        if gid in dwell_s and gid not in open_visits and enters.take(step.ts):
            open_visits[gid] = OpenVisit(gid, step.ts, dwell_fired=False, last_inside=True)
            events.append(VisitEvent(EventType.ENTER, gid, step.ts))
    for gid in sorted(open_visits):
        visit = open_visits[gid]
        visit.last_inside = gid in step.inside
        due = (step.ts - visit.entered_at).total_seconds() >= dwell_s[gid]
        if not visit.dwell_fired and due:
            visit.dwell_fired = True
            events.append(VisitEvent(EventType.DWELL, gid, step.ts))
    return events
