"""`feedback_recent` (SPEC section 14): only feedback offers, checked right after cooldown."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from geopush.campaigns.decide import candidate_offers, check_offer
from geopush.codes import EventType, SuppressionReason, Trigger
from tests.unit.test_campaign_decide import NOW, baseline

R = SuppressionReason


def _feedback():  # type: ignore[no-untyped-def]
    s = baseline()
    return replace(s, offer=replace(s.offer, trigger=Trigger.FEEDBACK),
                   event=replace(s.event, type=EventType.EXIT),
                   facts=replace(s.facts, last_feedback=NOW - timedelta(days=13)))


def test_feedback_recent_follows_cooldown_and_precedes_quiet_hours() -> None:
    s = _feedback()
    assert check_offer(s.offer, s.event, s.facts, s.now, s.rules) == R.FEEDBACK_RECENT
    cooled = replace(s.facts, last_contact={"o1": NOW - timedelta(seconds=10)})
    assert check_offer(s.offer, s.event, cooled, s.now, s.rules) == R.COOLDOWN
    quiet = replace(s.facts, timezone="Asia/Tokyo")
    assert check_offer(s.offer, s.event, quiet, s.now, s.rules) == R.FEEDBACK_RECENT
    old = replace(s.facts, last_feedback=NOW - timedelta(days=15))
    assert check_offer(s.offer, s.event, old, s.now, s.rules) is None


def test_other_offers_ignore_the_last_feedback() -> None:
    s = baseline()
    facts = replace(s.facts, last_feedback=NOW)
    assert check_offer(s.offer, s.event, facts, s.now, s.rules) is None


def test_feedback_is_a_candidate_only_for_an_exit_after_a_dwell() -> None:
    s = _feedback()
    gid = s.offer.geofence_ids[0] if s.offer.geofence_ids else "g"
    offer = replace(s.offer, geofence_ids=(gid,))
    assert candidate_offers([offer], EventType.EXIT, gid, None, after_dwell=True) == [offer]
    assert candidate_offers([offer], EventType.EXIT, gid, None) == []
    assert candidate_offers([offer], EventType.DWELL, gid, None, after_dwell=True) == []
