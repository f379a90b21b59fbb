"""The replay of `replay.replay`, over columns: the same counts, at a million events.

Calling `decide` per event costs about 140 µs each at this machine's load: a broad offer
over a week of visits took most of a minute. Most of SPEC section 4's checks do not depend
on what the replay has sent so far, only on the event, the offer and the person; those are
worked out here for every (event, candidate) pair at once with numpy. The Python loop then
walks, in decision order, only the pairs that could still pass, and carries the checks
that depend on earlier sends (budget, cooldown, daily cap, weekly maximum) in plain dicts
of integers (epoch microseconds, never datetimes).

The check order is `decide.check_offer`'s, first failing check wins:
schedule, store closed, segment, level, audience, recently bought, push consent, category
opt-out, not interested, stale | budget, cooldown | quiet hours | daily cap, weekly maximum
| fatigue, no token. Only visit offers are candidates of a visit event, so the feedback
check never applies. `tests/unit/test_fast_replay.py` proves, on random streams, that the
counts are those of `replay.replay`, which calls `decide` itself.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt

from geopush.campaigns.decide import (
    CampaignRules,
    EventFacts,
    _store_closed,
    candidate_offers,
    control_bucket,
    local_day_start,
    priority_key,
    zone,
)
from geopush.campaigns.offers import Offer, StoreInfo
from geopush.codes import Segment, SuppressionReason
from geopush.foresight.columns import EPOCH, EventColumns, to_us
from geopush.foresight.replay import Preview, Subject, Tally

R = SuppressionReason
#: Outcome codes of the previewed offer per event: -1 not a candidate, 0 queued, then one
#: per reason (`control_group` is the control outcome).
QUEUED = 0
REASONS: tuple[SuppressionReason, ...] = tuple(SuppressionReason)
CODE = {reason: i + 1 for i, reason in enumerate(REASONS)}
_DAY_US = 86_400_000_000
_WEEK_US = 7 * _DAY_US
_QUARTER_US = 900_000_000

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def fast_replay(
    preview_id: str,
    offers: Sequence[Offer],
    events: EventColumns,
    subjects: Mapping[str, Subject],
    stores: Mapping[str, StoreInfo],
    rules: CampaignRules,
    active: Mapping[str, Sequence[tuple[datetime, datetime | None]]] | None = None,
) -> Preview:
    """`replay.replay(preview_id, offers, events, …)` with the events as columns.

    `active`: per competing offer, the [from, until) periods it was active (until None:
    still is); it competes only for events decided within one. Others compete throughout.
    """
    active = active or {}
    result = Preview(events=len(events))
    index = {o.id: i for i, o in reversed(list(enumerate(offers)))}
    mine = index.get(preview_id, -1)
    people = _People(events.devices, subjects, rules)
    pe, po = _pairs(offers, index, events, active)
    if not len(pe):
        return result
    dev = events.device[pe].astype(np.int64)
    code = _static_codes(offers, events, people, stores, pe, po, dev)
    quiet = _quiet(events, people)[pe]
    tail = people.tail_codes(offers)[po, dev]
    alive = (code == 0) & ((po == mine) | (~quiet & (tail == 0)))
    out = np.full(len(events), -1, np.int64)
    theirs = (po == mine) & ~alive
    out[pe[theirs]] = code[theirs]
    picked = np.flatnonzero(alive)
    looped, outcome = _walk(
        offers, mine, rules, people,
        pe[picked].tolist(), po[picked].tolist(), events.now_us[pe[picked]].tolist(),
        people.who[dev[picked]].tolist(), dev[picked].tolist(), quiet[picked].tolist(),
        tail[picked].tolist())
    if looped:
        out[np.asarray(looped, np.int64)] = np.asarray(outcome, np.int64)
    _tally(result, out, events, people, stores)
    return result


class _People:
    """Per device index: who it is (customer, else device), zone, and the facts of SPEC 4
    and 15 the checks read, with their distinct combinations numbered once."""

    def __init__(self, devices: Sequence[str | None], subjects: Mapping[str, Subject],
                 rules: CampaignRules) -> None:
        unknown = Subject(device_id="", push_consent=False, token_active=False)
        self.subjects = [(subjects.get(d) if d is not None else None) or unknown
                         for d in devices]
        names: dict[str | None, int] = {}
        self.names: list[str | None] = []
        who = []
        for d, s in zip(devices, self.subjects, strict=True):
            name = s.customer_id if s.customer_id is not None else d
            if name not in names:
                names[name] = len(names)
                self.names.append(name)
            who.append(names[name])
        self.who = np.asarray(who, np.int64)
        self.zones = _Zones()
        self.zone = np.asarray([self.zones.of(zone(s.timezone)) for s in self.subjects],
                               np.int64)
        self.timezone = [s.timezone for s in self.subjects]
        self.segment = [str(s.segment if s.customer_id else Segment.UNKNOWN)
                        for s in self.subjects]
        self.max_per_week = [s.max_per_week for s in self.subjects]
        default = (rules.quiet_hours_start, rules.quiet_hours_end)
        quiet = [s.quiet_hours or default for s in self.subjects]
        self.quiet_start = np.asarray([_tod(a) for a, _ in quiet], np.int64)
        self.quiet_end = np.asarray([_tod(b) for _, b in quiet], np.int64)

    def pre_codes(self, offers: Sequence[Offer]) -> Ints:
        """[offer, device]: the first failing check from segment to not interested, or 0."""
        return self._by_kind(offers, _person_code, lambda s: (
            s.segment if s.customer_id is not None else Segment.UNKNOWN, s.level,
            s.purchase_categories, s.recommended_categories, s.recent_categories,
            s.push_consent, s.consent_categories, s.interests))

    def tail_codes(self, offers: Sequence[Offer]) -> Ints:
        """[offer, device]: fatigue or no token, or 0."""
        return self._by_kind(offers, _tail_code,
                             lambda s: (s.fatigued_categories, s.token_active))

    def _by_kind(self, offers: Sequence[Offer], check: Any, kind: Any) -> Ints:
        kinds: dict[Any, int] = {}
        of_device = [kinds.setdefault(kind(s), len(kinds)) for s in self.subjects]
        firsts: dict[int, Subject] = {}
        for s, k in zip(self.subjects, of_device, strict=True):
            firsts.setdefault(k, s)
        table = np.asarray([[check(o, firsts[k]) for k in range(len(kinds))]
                            for o in offers], np.int64).reshape(len(offers), len(kinds))
        return table[:, np.asarray(of_device, np.int64)] if len(of_device) else table


def _person_code(offer: Offer, s: Subject) -> int:
    segment = s.segment if s.customer_id is not None else Segment.UNKNOWN
    if offer.segments and segment not in offer.segments:
        return CODE[R.SEGMENT_MISMATCH]
    if offer.levels and s.level not in offer.levels:
        return CODE[R.LEVEL_MISMATCH]
    if offer.audience is not None and not offer.audience.matches(
            s.purchase_categories, s.recommended_categories, offer.category):
        return CODE[R.AUDIENCE_MISMATCH]
    if (offer.category is not None and not offer.allow_recent_buyers
            and offer.category in s.recent_categories):
        return CODE[R.RECENTLY_BOUGHT]
    if not s.push_consent:
        return CODE[R.NO_PUSH_CONSENT]
    if (offer.category is not None and s.consent_categories is not None
            and offer.category not in s.consent_categories):
        return CODE[R.CATEGORY_OPT_OUT]
    if (offer.category is not None and s.interests is not None
            and offer.category not in s.interests):
        return CODE[R.NOT_INTERESTED]
    return 0


def _tail_code(offer: Offer, s: Subject) -> int:
    if offer.category is not None and offer.category in s.fatigued_categories:
        return CODE[R.FATIGUE]
    if not s.token_active:
        return CODE[R.NO_TOKEN]
    return 0


def _pairs(offers: Sequence[Offer], index: Mapping[str, int], events: EventColumns,
           active: Mapping[str, Sequence[tuple[datetime, datetime | None]]]
           ) -> tuple[Ints, Ints]:
    """Every (event, candidate offer) in decision order: events in order, each one's
    candidates in `candidate_offers`'s order; rivals not active at the event left out."""
    lists = [[index[o.id] for o in candidate_offers(offers, t, f, s)]
             for t, f, s in events.keys]
    width = max((len(c) for c in lists), default=0)
    if not width or not len(events):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    table = np.full((len(lists), width), -1, np.int64)
    for k, c in enumerate(lists):
        table[k, :len(c)] = c
    count = (table >= 0).sum(axis=1)[events.key]
    pe = np.repeat(np.arange(len(events), dtype=np.int64), count)
    starts = np.cumsum(count) - count
    po = table[events.key[pe], np.arange(len(pe), dtype=np.int64) - starts[pe]]
    keep = np.ones(len(pe), np.bool_)
    for o, offer in enumerate(offers):
        periods = active.get(offer.id)
        if periods is None or index[offer.id] != o:
            continue
        mine = np.flatnonzero(po == o)
        now = events.now_us[pe[mine]]
        inside = np.zeros(len(mine), np.bool_)
        for start, end in periods:
            inside |= (now >= to_us(start)) & (True if end is None else now < to_us(end))
        keep[mine] = inside
    return pe[keep], po[keep]


def _static_codes(offers: Sequence[Offer], events: EventColumns, people: _People,
                  stores: Mapping[str, StoreInfo], pe: Ints, po: Ints, dev: Ints) -> Ints:
    """Per pair, the first failing check that does not depend on earlier sends and comes
    before the budget: schedule, store closed, the person's, stale; 0 when all pass."""
    code = people.pre_codes(offers)[po, dev]
    ttl = np.asarray([o.ttl_s * 1_000_000 for o in offers], np.int64)
    stale = (events.now_us[pe] - events.ts_us[pe]) > ttl[po]
    code = np.where((code == 0) & stale, CODE[R.STALE_EVENT], code)
    store_of_key = [stores.get(s) if s else None for _, _, s in events.keys]
    closed = _closed(events, store_of_key, people)
    if closed is not None:
        code = np.where(closed[pe], CODE[R.STORE_CLOSED], code)
    local_now: Ints | None = None
    for o, offer in enumerate(offers):
        if offer.starts_at is None and offer.ends_at is None and offer.daily_window is None:
            continue
        mine = po == o
        now = events.now_us[pe[mine]]
        outside = np.zeros(len(now), np.bool_)
        if offer.starts_at is not None:
            outside |= now < to_us(offer.starts_at)
        if offer.ends_at is not None:
            outside |= now >= to_us(offer.ends_at)
        if offer.daily_window is not None:
            if local_now is None:
                local_now = _local_tod(events.now_us, _store_zones(events, store_of_key,
                                                                   people), people.zones)
            window = offer.daily_window
            outside |= ~_in_window(local_now[pe[mine]], _tod(window.start), _tod(window.end))
        code[mine] = np.where(outside, CODE[R.OUTSIDE_SCHEDULE], code[mine])
    return code


def _closed(events: EventColumns, store_of_key: list[StoreInfo | None],
            people: _People) -> Bools | None:
    """Per event, whether its store was closed at the event time (decide's own check,
    called once per event of a store with opening hours); None: no store has hours."""
    with_hours = np.asarray([s is not None and s.opening_hours is not None
                             for s in store_of_key], np.bool_)
    if not with_hours.any():
        return None
    closed = np.zeros(len(events), np.bool_)
    for i in np.flatnonzero(with_hours[events.key]).tolist():
        kind, fence, _ = events.keys[events.key[i]]
        store = store_of_key[events.key[i]]
        assert store is not None
        ts = EPOCH + timedelta(microseconds=int(events.ts_us[i]))
        closed[i] = _store_closed(EventFacts(kind, fence, store, ts), zone(store.timezone))
    return closed


def _store_zones(events: EventColumns, store_of_key: list[StoreInfo | None],
                 people: _People) -> Ints:
    """Per event, the zone of its store, else of its device (as `check_offer` picks)."""
    of_key = np.asarray([-1 if s is None else people.zones.of(zone(s.timezone))
                         for s in store_of_key], np.int64)
    by_store = of_key[events.key]
    return np.where(by_store >= 0, by_store, people.zone[events.device])


def _quiet(events: EventColumns, people: _People) -> Bools:
    """Per event, whether the device time falls in the person's (or the global) quiet
    hours, in the device's zone."""
    local = _local_tod(events.ts_us, people.zone[events.device], people.zones)
    start, end = people.quiet_start[events.device], people.quiet_end[events.device]
    inside = ((start < end) & (start <= local) & (local < end)) | (
        (start > end) & ((local >= start) | (local < end)))
    return np.asarray(inside, np.bool_)


def _walk(offers: Sequence[Offer], mine: int, rules: CampaignRules, people: _People,
          pair_event: list[int], pair_offer: list[int], pair_now: list[int],
          pair_who: list[int], pair_device: list[int], pair_quiet: list[bool],
          pair_tail: list[int]) -> tuple[list[int], list[int]]:
    """The checks that depend on earlier sends, pair by pair in decision order; the
    winner of each event is queued or held out as control, and that is remembered. Returns
    the events where the previewed offer was decided here, and its outcome code there."""
    budget = [o.max_sends for o in offers]
    cooldown = [o.cooldown_s * 1_000_000 for o in offers]
    rank = {o: r for r, o in enumerate(sorted(range(len(offers)),
                                               key=lambda i: priority_key(offers[i])))}
    control_pct = [o.control_pct for o in offers]
    ids = [o.id for o in offers]
    cap = rules.daily_cap
    sends = [0] * len(offers)
    contacts: dict[int, dict[int, int]] = {}
    sent_at: dict[int, list[int]] = {}
    day_starts: dict[tuple[str, int], int] = {}
    buckets: dict[tuple[int, int], int] = {}
    budget_code, cooldown_code, quiet_code = CODE[R.BUDGET_EXHAUSTED], CODE[R.COOLDOWN], \
        CODE[R.QUIET_HOURS]
    cap_code, week_code = CODE[R.DAILY_CAP], CODE[R.WEEKLY_PREFERENCE]
    lower_code, control_code = CODE[R.LOWER_PRIORITY], CODE[R.CONTROL_GROUP]
    looped: list[int] = []
    outcome: list[int] = []
    # Each event's pairs are adjacent: [i, j) bounds them.
    bounds = (np.flatnonzero(np.diff(np.asarray(pair_event, np.int64))) + 1).tolist()
    for i, j in zip([0, *bounds], [*bounds, len(pair_event)], strict=True):
        if i == j:
            continue
        event, now, who, device = pair_event[i], pair_now[i], pair_who[i], pair_device[i]
        mine_reason = -1
        best = -1
        seen_of = contacts.get(who)
        times = sent_at.get(who)
        today = week = -1  # counted when first needed
        for k in range(i, j):
            o = pair_offer[k]
            reason = 0
            limit = budget[o]
            last = seen_of.get(o) if seen_of is not None else None
            if limit is not None and sends[o] >= limit:
                reason = budget_code
            elif last is not None and now - last < cooldown[o]:
                reason = cooldown_code
            elif pair_quiet[k]:
                reason = quiet_code
            else:
                if today < 0:
                    today = week = 0
                    if times:
                        week = len(times) - bisect_left(times, now - _WEEK_US)
                        quarter = (people.timezone[device], now // _QUARTER_US)
                        start = day_starts.get(quarter)
                        if start is None:
                            start = day_starts[quarter] = to_us(local_day_start(
                                EPOCH + timedelta(microseconds=now), quarter[0]))
                        today = len(times) - bisect_left(times, start)
                weekly = people.max_per_week[device]
                if today >= cap:
                    reason = cap_code
                elif weekly is not None and week >= weekly:
                    reason = week_code
                else:
                    reason = pair_tail[k]
            if reason == 0 and (best < 0 or rank[o] < rank[best]):
                best = o
            if o == mine:
                mine_reason = reason
        held = False
        if best >= 0:
            bucket = buckets.get((who, best))
            if bucket is None:
                name = people.names[who]
                bucket = buckets[(who, best)] = control_bucket(f"{name}", ids[best])
            held = bucket < control_pct[best]
            if seen_of is None:
                seen_of = contacts[who] = {}
            seen_of[best] = now
            if not held:
                sends[best] += 1
                if times is None:
                    times = sent_at[who] = []
                times.append(now)
        if mine_reason >= 0:
            looped.append(event)
            if mine_reason:
                outcome.append(mine_reason)
            elif best != mine:
                outcome.append(lower_code)
            else:
                outcome.append(control_code if held else QUEUED)
    return looped, outcome


def _tally(result: Preview, out: Ints, events: EventColumns, people: _People,
           stores: Mapping[str, StoreInfo]) -> None:
    """The counts of `replay.Preview` from each event's outcome code, slice by slice."""
    hit = np.flatnonzero(out >= 0)
    codes = out[hit]
    device = events.device[hit]
    who = people.who[device]
    segments = sorted(set(people.segment))
    segment_of = np.asarray([segments.index(s) for s in people.segment], np.int64)
    store_names = sorted({s or "none" for _, _, s in events.keys})
    store_of_key = np.asarray([store_names.index(s or "none") for _, _, s in events.keys],
                              np.int64)
    day = events.now_us[hit] // _DAY_US
    days = np.unique(day)
    slices: list[tuple[Any, list[Any], Ints]] = [
        (None, [None], np.zeros(len(hit), np.int64)),
        (result.by_segment, segments, segment_of[device]),
        (result.by_store, store_names, store_of_key[events.key[hit]]),
        (result.by_day, [(EPOCH + timedelta(days=int(d))).date() for d in days.tolist()],
         np.searchsorted(days, day).astype(np.int64)),
    ]
    width = len(REASONS) + 1
    queued = codes == QUEUED
    for into, labels, label in slices:
        counts: list[list[int]] = np.bincount(
            label * width + codes, minlength=len(labels) * width).reshape(
            len(labels), width).tolist()
        reached: dict[int, set[str]] = {}
        many = max(len(people.names), 1)
        slots, persons = np.divmod(np.unique(label[queued] * many + who[queued]), many)
        for slot, person in zip(slots.tolist(), persons.tolist(), strict=True):
            reached.setdefault(slot, set()).add(str(people.names[person]))
        for slot, row in enumerate(counts):
            if not any(row):
                continue
            tally = result.total if into is None else into[labels[slot]]
            _fill(tally, row, reached.get(slot, set()))


def _fill(tally: Tally, row: list[int], customers: set[str]) -> None:
    tally.triggered += sum(row)
    tally.would_send += row[QUEUED]
    tally.control += row[CODE[R.CONTROL_GROUP]]
    for reason, count in zip(REASONS, row[1:], strict=True):
        if count and reason is not R.CONTROL_GROUP:
            tally.suppressed[str(reason)] += count
    tally.customers |= customers


def _tod(value: time) -> int:
    """Microseconds since midnight of a wall-clock time."""
    return (((value.hour * 60) + value.minute) * 60 + value.second) * 1_000_000 \
        + value.microsecond


def _in_window(local: Ints, start: int, end: int) -> Bools:
    """`offers.in_time_window` over an array of microseconds since midnight."""
    if start < end:
        return np.asarray((start <= local) & (local < end), np.bool_)
    if start > end:
        return np.asarray((local >= start) | (local < end), np.bool_)
    return np.zeros(len(local), np.bool_)


class _Zones:
    """Zones numbered in order of first use."""

    def __init__(self) -> None:
        self.all: list[tzinfo] = []
        self._index: dict[tzinfo, int] = {}

    def of(self, z: tzinfo) -> int:
        if z not in self._index:
            self._index[z] = len(self.all)
            self.all.append(z)
        return self._index[z]


def _local_tod(instants: Ints, zone_of: Ints, zones: _Zones) -> Ints:
    """Microseconds since local midnight of each instant in its zone.

    The UTC offset is read once per zone and hour; where it differs between the hour's
    first and last second (a transition inside it), per instant. Transitions fall on
    whole seconds, so the offset of an instant's second is the instant's."""
    out = np.zeros(len(instants), np.int64)
    seconds = instants // 1_000_000
    for z_index, z in enumerate(zones.all):
        mine = np.flatnonzero(zone_of == z_index)
        if not len(mine):
            continue
        secs = seconds[mine]
        hours, which = np.unique(secs // 3600, return_inverse=True)
        first = np.asarray([_offset(z, h * 3600) for h in hours.tolist()], np.int64)
        last = np.asarray([_offset(z, h * 3600 + 3599) for h in hours.tolist()], np.int64)
        which = which.reshape(-1)
        offset = first[which]
        moving = np.flatnonzero((first != last)[which])
        for m in moving.tolist():
            offset[m] = _offset(z, int(secs[m]))
        out[mine] = (instants[mine] + offset) % _DAY_US
    return out


def _offset(z: tzinfo, second: int) -> int:
    """The UTC offset of `z` at an epoch second, in microseconds."""
    off = datetime.fromtimestamp(second, UTC).astimezone(z).utcoffset()
    return 0 if off is None else off // timedelta(microseconds=1)

