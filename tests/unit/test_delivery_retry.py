"""Backoff between delivery attempts (SPEC section 6) and the Retry-After it honours."""

from __future__ import annotations

import email.utils
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geopush.delivery.fcm import parse_retry_after
from geopush.delivery.retry import QUOTA_MIN_DELAY_S, backoff_ceiling, next_delay

attempts = st.integers(min_value=1, max_value=10_000)
seeds = st.integers(min_value=0, max_value=2**32)
retry_afters = st.none() | st.floats(min_value=0, max_value=86_400)


@given(attempt=attempts, retry_after=retry_afters, seed=seeds, quota=st.booleans())
def test_delay_is_bounded_and_never_before_retry_after(attempt, retry_after, seed, quota):
    delay = next_delay(attempt, retry_after, random.Random(seed), quota=quota)

    floor = retry_after if retry_after is not None else (QUOTA_MIN_DELAY_S if quota else 0.0)
    assert delay >= floor
    assert delay <= max(300.0, floor + 1.0)


@given(attempt=attempts, seed=seeds)
def test_quota_without_retry_after_waits_at_least_a_minute(attempt, seed):
    assert next_delay(attempt, None, random.Random(seed), quota=True) >= 60.0


@given(seed=seeds)
def test_retry_after_wins_over_the_quota_minute(seed):
    # FCM told us when; the 60 s floor is only for a 429 that does not say.
    assert 5.0 <= next_delay(1, 5.0, random.Random(seed), quota=True) <= 6.0


def test_ceiling_doubles_from_base_up_to_cap():
    assert [backoff_ceiling(n) for n in range(1, 11)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300,
    ]  # fmt: skip
    assert backoff_ceiling(10**9) == 300.0


def test_full_jitter_spreads_over_the_whole_window():
    rng = random.Random(7)
    delays = [next_delay(6, None, rng) for _ in range(2000)]  # window [0, 32]

    assert min(delays) < 1.0 and max(delays) > 31.0
    assert statistics.mean(delays) == pytest.approx(16.0, rel=0.1)


def test_same_seed_same_schedule():
    first = [next_delay(n, None, random.Random(3)) for n in range(1, 6)]
    again = [next_delay(n, None, random.Random(3)) for n in range(1, 6)]
    assert first == again


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(0, 1.0, 300.0), (1, 0.0, 300.0), (1, 10.0, 5.0)]
)
def test_bad_arguments_are_refused(attempt, base, cap):
    with pytest.raises(ValueError):
        next_delay(attempt, None, random.Random(0), base, cap)


def test_retry_after_header_forms():
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
