"""The preview's shortcuts change no count: leaving out the people an offer never reaches
gives the same answer as replaying everyone, with and without budgets among its rivals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from geopush.campaigns.decide import CampaignRules
from geopush.campaigns.offers import Offer, StoreInfo
from geopush.codes import EventType, Segment, Trigger
from geopush.foresight.columns import from_events
from geopush.foresight.fast_replay import fast_replay
from geopush.foresight.load import active_periods, relevant_columns, relevant_rows
from geopush.foresight.replay import ReplayEvent, Subject, replay

MESSAGE = {"default_locale": "en", "translations": {"en": {"title": "Hi", "body": "x"}}}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _offer(oid: str, fences: list[str], **extra: object) -> Offer:
    return Offer(id=oid, trigger=Trigger.ENTER, message=MESSAGE,
                 created_at=NOW - timedelta(days=30), geofence_ids=tuple(fences),
                 **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", [None, 40])
def test_leaving_out_people_the_offer_never_reaches_changes_nothing(budget: int | None) -> None:
    rnd = random.Random(7)
    fences = [f"f{i}" for i in range(30)]
    mine = _offer("mine", fences[:3], cooldown_s=3600, control_pct=20)
    rivals = [_offer(f"r{k}", rnd.sample(fences, 6), priority=k % 3, cooldown_s=600,
                     max_sends=budget) for k in range(6)]
    subjects = {f"d{i}": Subject(device_id=f"d{i}", push_consent=i % 7 != 0, token_active=True,
                                 customer_id=f"c{i // 8}" if i % 3 else None,
                                 segment=Segment.GOOD, timezone="Asia/Shanghai")
                for i in range(800)}
    rows = []
    for i in range(6000):
        at = NOW - timedelta(days=3) + timedelta(seconds=40 * i)
        fence = rnd.choice(fences)
        rows.append((at, at - timedelta(seconds=3), "enter", fence, None,
                     f"d{rnd.randrange(800)}"))
    stores: dict[str, StoreInfo] = {}

    def run(kept: list[tuple]) -> dict:
        events = [ReplayEvent(r[0], r[1], EventType(r[2]), r[3], r[4], r[5]) for r in kept]
        answer = replay("mine", [mine, *rivals], events, subjects, stores, CampaignRules(),
                        {r.id: [(r.created_at, None)] for r in rivals})
        out = answer.as_json()
        out.pop("events")
        return out

    kept = relevant_rows(mine, rivals, rows, subjects)
    assert (len(kept) < len(rows)) == (budget is None)
    full, short = run(rows), run(kept)
    assert full == short
    columns = relevant_columns(mine, rivals, from_events(rows), subjects)
    assert len(columns) == len(kept)
    fast = fast_replay("mine", [mine, *rivals], columns, subjects, stores, CampaignRules(),
                       {r.id: [(r.created_at, None)] for r in rivals}).as_json()
    assert fast.pop("events") == len(kept)
    assert fast == short
    assert full["would_send"] and full["suppressed"].get("daily_cap")


def test_an_offer_competes_in_the_periods_its_status_log_says_it_was_active() -> None:
    t = [NOW - timedelta(days=d) for d in (6, 4, 3, 1)]
    log = (["active", "paused", "active", "deleted"], t)
    assert active_periods(*log, "paused", t[0], t[3]) == [(t[0], t[1]), (t[2], t[3])]
    assert active_periods(["paused", "active"], t[:2], "active", t[0], None) == [(t[1], None)]
    assert active_periods(["active", "active", "paused"], t[:3], "paused", t[0], None) == [
        (t[0], t[2])]
    # Without a log (written before it existed): active now means since its creation.
    assert active_periods(None, None, "active", t[0], None) == [(t[0], None)]
    assert active_periods(None, None, "paused", t[0], None) == []
    assert active_periods(None, None, "active", t[0], t[1]) == []
