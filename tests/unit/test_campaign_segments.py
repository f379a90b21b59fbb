"""FRAT segmentation (SPEC section 5): a population whose segments are known by construction,
the rule thresholds, and quintile scores with ties."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geopush.campaigns.segments import (
    CustomerActivity,
    CustomerSegment,
    SegmentRules,
    compute_segments,
    quintile_scores,
    segment_columns,
    segment_counts,
)
from geopush.codes import Segment

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RULES = SegmentRules()
LONG_AGO = NOW - timedelta(days=1000)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def customer(
    cid: str,
    *,
    created: datetime = LONG_AGO,
    first: datetime | None = None,
    last: datetime | None = None,
    frequency: int = 0,
    amount: float = 0.0,
    types: int = 0,
) -> CustomerActivity:
    if last is not None and first is None:
        first = ago(400)
    return CustomerActivity(cid, created, first, last, frequency, amount, types)


def one(c: CustomerActivity, *others: CustomerActivity) -> CustomerSegment:
    return compute_segments([c, *others], NOW, RULES)[0]


def population() -> tuple[list[CustomerActivity], dict[str, Segment]]:
    """Five groups of 20, each built to land in one segment whatever the scores of the rest."""
    customers: list[CustomerActivity] = []
    expected: dict[str, Segment] = {}

    def add(c: CustomerActivity, segment: Segment) -> None:
        customers.append(c)
        expected[c.customer_id] = segment

    for i in range(20):
        # new: first purchase this month (even big spenders), or no purchase, signed up lately
        if i % 2:
            add(
                customer(f"new{i}", first=ago(i), last=ago(i), frequency=50, amount=5000, types=3),
                Segment.NEW,
            )
        else:
            add(customer(f"new{i}", created=ago(i)), Segment.NEW)
        # inactive: last purchase 200+ days ago, or none at all for an old customer
        if i % 2:
            add(
                customer(f"inactive{i}", last=ago(181 + i), frequency=2, amount=40),
                Segment.INACTIVE,
            )
        else:
            add(customer(f"inactive{i}"), Segment.INACTIVE)
        # at risk: 61..179 days, even with the highest frequency and amount (half of them)
        big = i % 2 == 0
        add(
            customer(
                f"risk{i}",
                last=ago(61 + 5 * i),
                frequency=100 if big else 1,
                amount=9000 if big else 5,
            ),
            Segment.AT_RISK,
        )
        # best: recent, the most frequent and the biggest spenders among the recent
        add(customer(f"best{i}", last=ago(2 + i), frequency=60 + i, amount=6000 + i), Segment.BEST)
        # good: recent, but few and small purchases
        add(customer(f"good{i}", last=ago(3 + i), frequency=1 + i % 3, amount=10 + i), Segment.GOOD)
    return customers, expected


def test_a_population_built_for_each_segment() -> None:
    customers, expected = population()
    result = compute_segments(customers, NOW, RULES)
    assert [r.customer_id for r in result] == [c.customer_id for c in customers]
    assert {r.customer_id: r.segment for r in result} == expected
    assert segment_counts(result) == {
        "new": 20,
        "inactive": 20,
        "at_risk": 20,
        "best": 20,
        "good": 20,
    }


def test_scores_of_the_population() -> None:
    customers, _ = population()
    by_id = {r.customer_id: r for r in compute_segments(customers, NOW, RULES)}
    # 80 customers are ranked; 50 of them are below every best customer, so F, A ≥ 4.
    assert (by_id["best0"].f, by_id["best0"].a) == (4, 4)
    assert (by_id["best19"].f, by_id["best19"].a) == (5, 5)
    assert by_id["risk0"].f == 5  # at risk despite F = A = 5: the rules come first
    assert all((by_id[f"good{i}"].f or 0) < 4 for i in range(20))
    # No transaction in the lookback: no scores, no recency.
    never = by_id["inactive0"]
    assert (never.r, never.f, never.a, never.recency_days) == (None, None, None, None)
    # More recent = higher R.
    assert by_id["new1"].r == 5
    r_of_risk = by_id["risk19"].r
    assert r_of_risk is not None and r_of_risk <= 2


def test_figures_are_passed_through() -> None:
    c = customer("c", last=ago(3.5), frequency=4, amount=123.25, types=2)
    assert one(c) == CustomerSegment(
        customer_id="c",
        segment=Segment.GOOD,
        r=1,
        f=1,
        a=1,
        recency_days=3,
        frequency=4,
        amount=123.25,
        types=2,
    )


@pytest.mark.parametrize(
    ("c", "segment"),
    [
        # new: first transaction ≤ 30 days ago
        (customer("c", first=ago(30), last=ago(30), frequency=1), Segment.NEW),
        (customer("c", first=ago(30.0001), last=ago(30.0001), frequency=1), Segment.GOOD),
        # new: none at all and created ≤ 30 days ago
        (customer("c", created=ago(30)), Segment.NEW),
        (customer("c", created=ago(30.0001)), Segment.INACTIVE),
        # a first purchase long ago, even if the CRM record is new, is not new
        (customer("c", created=ago(1), first=ago(500)), Segment.INACTIVE),
        # inactive: no transaction in the last 180 days
        (customer("c", last=ago(180), frequency=1), Segment.AT_RISK),
        (customer("c", last=ago(180.0001), frequency=1), Segment.INACTIVE),
        # at risk: more than 60 days
        (customer("c", last=ago(60), frequency=1), Segment.GOOD),
        (customer("c", last=ago(60.0001), frequency=1), Segment.AT_RISK),
        # a last transaction older than the lookback counts as none
        (customer("c", last=ago(366), frequency=1), Segment.INACTIVE),
        # a transaction in the future (clock skew) counts as today
        (customer("c", last=NOW + timedelta(hours=3), frequency=1), Segment.GOOD),
    ],
)
def test_rule_thresholds(c: CustomerActivity, segment: Segment) -> None:
    assert one(c).segment == segment


def test_a_future_transaction_has_recency_zero() -> None:
    assert one(customer("c", last=NOW + timedelta(hours=3), frequency=1)).recency_days == 0


def test_rules_come_from_the_settings() -> None:
    rules = SegmentRules(lookback_days=30, new_days=7, at_risk_days=10, inactive_days=20)
    c = [customer("c", last=ago(15), frequency=1), customer("d", last=ago(40), frequency=5)]
    result = compute_segments(c, NOW, rules)
    assert [r.segment for r in result] == [Segment.AT_RISK, Segment.INACTIVE]
    assert result[1].f is None  # outside the 30-day lookback


def test_best_needs_both_f_and_a() -> None:
    # Ten recent customers; x has the top frequency but the bottom amount, y the reverse.
    others = [customer(f"o{i}", last=ago(5), frequency=10 + i, amount=100 + i) for i in range(8)]
    x = customer("x", last=ago(5), frequency=99, amount=1)
    y = customer("y", last=ago(5), frequency=1, amount=999)
    z = customer("z", last=ago(5), frequency=98, amount=998)
    result = {r.customer_id: r for r in compute_segments([*others, x, y, z], NOW, RULES)}
    assert (result["x"].f, result["x"].a, result["x"].segment) == (5, 1, Segment.GOOD)
    assert (result["y"].f, result["y"].a, result["y"].segment) == (1, 5, Segment.GOOD)
    assert (result["z"].f, result["z"].a, result["z"].segment) == (5, 5, Segment.BEST)
    # o6 has 7 of 11 strictly below it (o0..o5 and y, or x): 1 + 5 × 7 // 11 = 4.
    assert (result["o6"].f, result["o6"].a, result["o6"].segment) == (4, 4, Segment.BEST)
    assert (result["o5"].f, result["o5"].a, result["o5"].segment) == (3, 3, Segment.GOOD)


# --- quintiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "scores"),
    [
        ([], []),
        ([7], [1]),
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
        ([5, 4, 3, 2, 1], [5, 4, 3, 2, 1]),
        (list(range(10)), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
        ([3, 3, 3, 3], [1, 1, 1, 1]),  # all equal: nobody stands out
        ([1, 2, 2, 2, 3], [1, 2, 2, 2, 5]),  # ties share the lower score
        ([1] * 6 + [2, 3, 4, 5], [1] * 6 + [4, 4, 5, 5]),  # most bought once
        ([0.5, 0.25, 0.5], [2, 1, 2]),
    ],
)
def test_quintile_scores(values: list[float], scores: list[int]) -> None:
    assert quintile_scores(values).tolist() == scores


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=60), st.randoms())
def test_quintiles_are_fair_and_order_free(values: list[int], rnd: object) -> None:
    scores = quintile_scores(values).tolist()
    assert all(1 <= s <= 5 for s in scores)
    assert scores[values.index(min(values))] == 1
    for v, s in zip(values, scores, strict=True):
        for w, t in zip(values, scores, strict=True):
            if v == w:
                assert s == t
            elif v < w:
                assert s <= t
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    mapping = dict(zip(values, scores, strict=True))
    assert quintile_scores(shuffled).tolist() == [mapping[v] for v in shuffled]


def test_distinct_values_fill_each_quintile_equally() -> None:
    scores = quintile_scores(np.arange(1000))
    assert np.bincount(scores).tolist() == [0, 200, 200, 200, 200, 200]


def test_recency_ties_by_day() -> None:
    # Recency counts whole 24 h periods: 2 d 2 h → 2, 1 d 22 h → 1.
    cs = [
        customer("morning", last=ago(2) - timedelta(hours=2), frequency=1),
        customer("evening", last=ago(2) + timedelta(hours=2), frequency=1),
        customer("older", last=ago(20), frequency=1),
        customer("oldest", last=ago(50), frequency=1),
        customer("recent", last=ago(0.1), frequency=1),
    ]
    result = {r.customer_id: r for r in compute_segments(cs, NOW, RULES)}
    assert result["morning"].recency_days == 2 and result["evening"].recency_days == 1
    r = {k: v.r for k, v in result.items()}
    assert r == {"oldest": 1, "older": 2, "morning": 3, "evening": 4, "recent": 5}
    same_day = [
        customer(f"c{i}", last=ago(3) - timedelta(minutes=i), frequency=1) for i in range(5)
    ]
    assert {x.r for x in compute_segments(same_day, NOW, RULES)} == {1}


def test_only_customers_with_a_transaction_in_the_lookback_are_ranked() -> None:
    ranked = [
        customer(f"c{i}", last=ago(5), frequency=i + 1, amount=10.0 * (i + 1)) for i in range(5)
    ]
    unranked = [customer(f"n{i}") for i in range(50)]
    result = compute_segments([*unranked, *ranked], NOW, RULES)
    assert [r.f for r in result[50:]] == [1, 2, 3, 4, 5]
    assert all(r.f is None for r in result[:50])


def test_columns_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        segment_columns(NOW, RULES, [0.0, 1.0], [0.0], [0.0, 1.0], [1, 1], [1.0, 1.0])


def test_a_large_base_is_vectorized() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    now_s = NOW.timestamp()
    last = now_s - rng.uniform(0, 400, n) * 86_400
    last[rng.random(n) < 0.2] = np.nan
    first = np.where(np.isnan(last), np.nan, last - rng.uniform(0, 800, n) * 86_400)
    created = now_s - rng.uniform(0, 2000, n) * 86_400
    freq = np.where(np.isnan(last), 0, rng.integers(1, 40, n))
    amount = freq * rng.uniform(5, 200, n)
    started = time.perf_counter()
    cols = segment_columns(NOW, RULES, created, first, last, freq, amount)
    elapsed = time.perf_counter() - started
    assert cols.segment.shape == (n,)
    assert set(np.unique(cols.segment).tolist()) == {0, 1, 2, 3, 4}
    assert elapsed < 5.0  # about 0.1 s; a Python loop would take ~10x longer


def test_row_objects_on_a_large_base() -> None:
    cs = [
        customer(f"c{i}", last=ago(i % 300), frequency=1 + i % 17, amount=float(i % 101))
        for i in range(20_000)
    ]
    result = compute_segments(cs, NOW, RULES)
    assert len(result) == 20_000
    assert sum(segment_counts(result).values()) == 20_000
