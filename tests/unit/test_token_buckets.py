"""The bounded map of token buckets behind the per-device and per-address ping limits."""

from __future__ import annotations

import pytest

from geopush.api.token_buckets import TokenBuckets, retry_after


def test_burst_then_one_token_per_interval() -> None:
    buckets = TokenBuckets(rate_per_s=2.0, burst=3.0, max_keys=10)
    assert [buckets.take("d", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("d", 0.0) == pytest.approx(0.5)  # refused: half a second to wait
    assert buckets.take("d", 0.5) == 0.0
    assert buckets.take("other", 0.5) == 0.0  # each key its own bucket


def test_the_map_never_holds_more_than_max_keys_and_forgets_the_idlest() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1.0, max_keys=3)
    for key in ("a", "b", "c"):
        buckets.take(key, 0.0)
    buckets.take("a", 0.1)  # "a" used again: now "b" is the least recently used
    buckets.take("d", 0.2)
    assert len(buckets) == 3
    assert "b" not in buckets and {"a", "c", "d"} <= {k for k in "abcd" if k in buckets}
    # A flood of new keys keeps the map at its bound (no growth, no wholesale reset).
    for i in range(10_000):
        buckets.take(i, 1.0)
    assert len(buckets) == 3


def test_a_busy_key_is_not_given_a_fresh_burst_by_other_keys_arriving() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=2.0, max_keys=1000)
    buckets.take("busy", 0.0)
    buckets.take("busy", 0.0)
    for i in range(999):  # fills the map to its bound, "busy" stays the most recent...
        buckets.take(i, 0.0)
        buckets.take("busy", 0.0)
    assert buckets.take("busy", 0.0) > 0  # ...and still has no tokens


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.001, 1.0, 1.2, 59.5)] == ["1", "1", "2", "60"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate_per_s=0, burst=1, max_keys=1)
