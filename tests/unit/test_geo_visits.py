"""The visit state machine (SPEC section 3), behaviour by behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from geopush.codes import EventType as E
from geopush.geo.earth import WGS84
from geopush.geo.geometry import circle, parse_geometry
from geopush.geo.index import GeofenceIndex
from geopush.geo.visits import (
    DeviceVisits,
    OpenVisit,
    Step,
    VisitEvent,
    VisitRules,
    advance,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
RULES = VisitRules()
DWELL = {"a": 300, "b": 300}


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(seconds: float, inside: str = "", near: str = "") -> Step:
    """A ping: `inside` and `near` list one-letter geofence ids (inside implies near)."""
    return Step(t(seconds), frozenset(inside), frozenset(inside) | frozenset(near))


def run(steps: list[Step], dwell: dict[str, int] = DWELL, state: DeviceVisits | None = None):
    return advance(state or DeviceVisits(last_ts=None, open={}), steps, dwell, RULES)


def ev(kind: E, gid: str, seconds: float) -> VisitEvent:
    return VisitEvent(kind, gid, t(seconds))


def test_enter_when_the_point_is_inside() -> None:
    state, events = run([step(0), step(10, "a")])
    assert events == [ev(E.ENTER, "a", 10)]
    assert state.open == {"a": OpenVisit("a", t(10), dwell_fired=False, last_inside=True)}
    assert state.last_ts == t(10)


def test_no_second_enter_while_inside() -> None:
    _, events = run([step(0, "a"), step(10, "a"), step(20, "a")])
    assert events == [ev(E.ENTER, "a", 0)]


# --- exit and the buffer, measured with the real index --------------------------------------


@pytest.mark.parametrize(
    ("fence", "edge_lon", "edge_lat"),
    [
        (circle(2.35, 48.85, 100), *WGS84.fwd(2.35, 48.85, 90, 100)[:2]),
        (
            parse_geometry(
                {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [2.35, 48.85],
                            [2.352, 48.85],
                            [2.352, 48.851],
                            [2.35, 48.851],
                            [2.35, 48.85],
                        ]
                    ],
                }
            ),
            2.352,
            48.8505,
        ),
    ],
    ids=["circle", "polygon"],
)
def test_exit_only_beyond_the_buffer(fence, edge_lon: float, edge_lat: float) -> None:
    index = GeofenceIndex.build([("a", fence)])
    # Due east of the edge: on it, 10 m out, 19.9 m out, 30 m out.
    offsets = np.array([0.0, 10.0, 19.9, 30.0])
    lons, lats, _ = WGS84.fwd(np.full(4, edge_lon), np.full(4, edge_lat), np.full(4, 90.0), offsets)
    inside, near = index.locate(lons, lats, RULES.exit_buffer_m)
    assert inside == [{"a"}, set(), set(), set()]
    assert near == [{"a"}, {"a"}, {"a"}, set()]
    steps = [Step(t(i * 10), inside[i], near[i]) for i in range(4)]
    state, events = run(steps)
    assert events == [ev(E.ENTER, "a", 0), ev(E.EXIT, "a", 30)]
    assert state.open == {}


def test_a_visit_in_the_buffer_band_is_kept_and_last_inside_says_so() -> None:
    state, events = run([step(0, "a"), step(10, near="a")])
    assert events == [ev(E.ENTER, "a", 0)]
    assert state.open["a"].last_inside is False
    state, _ = run([step(20, "a")], state=state)
    assert state.open["a"].last_inside is True


def test_buffer_band_does_not_enter() -> None:
    _, events = run([step(0, near="a"), step(10, near="a")])
    assert events == []


# --- timeout -------------------------------------------------------------------------------


def test_timeout_closes_every_visit_at_the_previous_ping_ts() -> None:
    _, events = run([step(0, "ab"), step(100, "ab"), step(100 + 3601, "b")])
    assert events == [
        ev(E.ENTER, "a", 0),
        ev(E.ENTER, "b", 0),
        ev(E.EXIT, "a", 100),
        ev(E.EXIT, "b", 100),
        ev(E.ENTER, "b", 3701),  # back inside after the gap: a new visit
    ]


def test_a_gap_of_exactly_the_timeout_is_not_a_timeout() -> None:
    _, events = run([step(0, "a"), step(3600, "a")])
    assert events == [ev(E.ENTER, "a", 0), ev(E.DWELL, "a", 3600)]


def test_timeout_spans_batches() -> None:
    state, _ = run([step(0, "a")])
    state, events = run([step(4000, "a")], state=state)
    assert events == [ev(E.EXIT, "a", 0), ev(E.ENTER, "a", 4000)]


def test_after_a_timeout_a_buffer_band_ping_does_not_reopen_the_visit() -> None:
    _, events = run([step(0, "a"), step(5000, near="a")])
    assert events == [ev(E.ENTER, "a", 0), ev(E.EXIT, "a", 0)]


# --- dwell ---------------------------------------------------------------------------------


def test_dwell_once_after_dwell_s() -> None:
    _, events = run([step(0, "a"), step(299, "a"), step(300, "a"), step(900, "a")])
    assert events == [ev(E.ENTER, "a", 0), ev(E.DWELL, "a", 300)]


def test_dwell_counts_from_the_enter_of_this_visit() -> None:
    steps = [step(0, "a"), step(200), step(250, "a"), step(500, "a"), step(550, "a")]
    _, events = run(steps)
    assert events == [
        ev(E.ENTER, "a", 0),
        ev(E.EXIT, "a", 200),
        ev(E.ENTER, "a", 250),
        ev(E.DWELL, "a", 550),
    ]


def test_dwell_fires_on_a_buffer_band_ping_of_an_open_visit() -> None:
    # SPEC rule 4 reads "inside G" as the visit state, like rule 2.
    _, events = run([step(0, "a"), step(400, near="a")])
    assert events == [ev(E.ENTER, "a", 0), ev(E.DWELL, "a", 400)]


def test_enter_and_dwell_on_the_same_ping_when_dwell_s_is_zero() -> None:
    _, events = run([step(0, "a")], dwell={"a": 0})
    assert events == [ev(E.ENTER, "a", 0), ev(E.DWELL, "a", 0)]


# --- order within a ping -------------------------------------------------------------------


def test_exits_then_enters_then_dwells_within_a_ping() -> None:
    dwell = {"a": 300, "b": 300, "c": 0, "d": 100}
    steps = [step(0, "ad"), step(200, "bcd")]
    _, events = run(steps, dwell=dwell)
    assert events == [
        ev(E.ENTER, "a", 0),
        ev(E.ENTER, "d", 0),
        ev(E.EXIT, "a", 200),
        ev(E.ENTER, "b", 200),
        ev(E.ENTER, "c", 200),
        ev(E.DWELL, "c", 200),
        ev(E.DWELL, "d", 200),
    ]


# --- geofences that went away ------------------------------------------------------------


def test_open_visits_of_dropped_geofences_close_silently() -> None:
    state, _ = run([step(0, "ab")])
    state, events = run([step(10, "ab")], dwell={"b": 300}, state=state)
    assert events == []
    assert set(state.open) == {"b"}


def test_a_dropped_geofence_is_not_entered_and_timeout_ignores_it() -> None:
    state, _ = run([step(0, "ab")])
    state, events = run([step(5000, "ab")], dwell={"b": 300}, state=state)
    assert events == [ev(E.EXIT, "b", 0), ev(E.ENTER, "b", 5000)]


def test_dropping_happens_even_without_steps() -> None:
    state, _ = run([step(0, "ab")])
    state, events = run([], dwell={"a": 300}, state=state)
    assert events == [] and set(state.open) == {"a"}


# --- purity --------------------------------------------------------------------------------


def test_the_input_state_is_not_mutated() -> None:
    state, _ = run([step(0, "a")])
    snapshot = DeviceVisits(state.last_ts, {k: OpenVisit(**vars(v)) for k, v in state.open.items()},
                            state.recent_enters)
    run([step(400, "a"), step(500)], state=state)
    assert state == snapshot


def test_steps_must_move_forward() -> None:
    state, _ = run([step(10, "a")])
    with pytest.raises(ValueError, match="increasing"):
        run([step(10, "a")], state=state)
