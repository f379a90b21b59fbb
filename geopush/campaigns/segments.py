"""FRAT segmentation (SPEC section 5): per-customer figures in, scores and segments out.

Runs on the whole customer base after every transactions import, so the work is done on
numpy columns: an O(n log n) sort per score instead of Python loops over 100,000+ rows.

Definitions, chosen so that a marketer can recompute any score by hand:
- recency_days: whole 24-hour periods (floor) since the last transaction in the lookback; a
  transaction stamped in the future counts as 0. Customers whose purchases are the same
  number of days old are equally recent, whatever the hour (no calendar day is used: a
  customer base spans time zones).
- R, F, A scores (1–5) are computed among customers with a transaction in the lookback only:
  score = 1 + floor(5 × below / n), where n is that population and `below` the number of its
  customers with a strictly worse value (older for R, fewer or less for F and A). Equal values
  always get equal scores (ties go down: a 5 means at least 80 % of the others are strictly
  worse), nothing depends on row order, and the lowest value always scores 1. With a heavy
  tie (most customers bought once) the scores skip numbers rather than split equal customers.
- The segment rules compare exact durations (`now − ts > at_risk_days × 24 h`), not the
  rounded recency_days.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geopush.codes import Segment

_DAY_S = 86_400.0

#: The segments FRAT assigns, in rule order (`unknown` is only for devices without customer).
FRAT_SEGMENTS: tuple[Segment, ...] = (
    Segment.NEW,
    Segment.INACTIVE,
    Segment.AT_RISK,
    Segment.BEST,
    Segment.GOOD,
)


@dataclass(frozen=True)
class SegmentRules:
    """The `[segments]` thresholds, in days."""

    lookback_days: int = 365
    new_days: int = 30
    at_risk_days: int = 60
    inactive_days: int = 180


@dataclass(frozen=True)
class CustomerActivity:
    """One customer's figures, as one aggregate query returns them.

    `first_tx_ts` is the first transaction ever; `last_tx_ts`, `frequency`, `amount` and
    `types` (distinct categories) cover the lookback only — a `last_tx_ts` older than the
    lookback is treated as None. All datetimes are aware.
    """

    customer_id: str
    created_at: datetime
    first_tx_ts: datetime | None = None
    last_tx_ts: datetime | None = None
    frequency: int = 0
    amount: float = 0.0
    types: int = 0


@dataclass(frozen=True)
class CustomerSegment:
    """A customer's segment and FRAT figures; scores and recency are None without a
    transaction in the lookback."""

    customer_id: str
    segment: Segment
    r: int | None
    f: int | None
    a: int | None
    recency_days: int | None
    frequency: int
    amount: float
    types: int


@dataclass(frozen=True)
class SegmentColumns:
    """`segment_columns`' result, one entry per customer: scores are 0 and recency_days is
    -1 where the customer has no transaction in the lookback; `segment` holds indices into
    `FRAT_SEGMENTS`."""

    segment: NDArray[np.int8]
    r: NDArray[np.int8]
    f: NDArray[np.int8]
    a: NDArray[np.int8]
    recency_days: NDArray[np.int64]


def quintile_scores(values: ArrayLike) -> NDArray[np.int8]:
    """Scores 1–5 of each value among all of them: 1 + floor(5 × strictly-lower / n).

    Higher values score higher; equal values score the same (see the module docstring).
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    below = np.searchsorted(np.sort(v), v, side="left")
    return (1 + (5 * below) // n).astype(np.int8)


def segment_columns(
    now: datetime,
    rules: SegmentRules,
    created_at_s: ArrayLike,
    first_tx_s: ArrayLike,
    last_tx_s: ArrayLike,
    frequency: ArrayLike,
    amount: ArrayLike,
) -> SegmentColumns:
    """The columnar core: times are POSIX seconds (float, NaN = none), one entry per customer.

    For callers that already hold columns (e.g. straight from a query); `compute_segments`
    wraps it for row objects.
    """
    now_s = now.timestamp()
    created = np.asarray(created_at_s, dtype=np.float64)
    first = np.asarray(first_tx_s, dtype=np.float64)
    last = np.asarray(last_tx_s, dtype=np.float64)
    freq = np.asarray(frequency, dtype=np.float64)
    amt = np.asarray(amount, dtype=np.float64)
    size = created.size
    if not all(a.shape == (size,) for a in (first, last, freq, amt)):
        raise ValueError("every column must be one-dimensional and of the same length")

    last_age = now_s - last
    with np.errstate(invalid="ignore"):
        # NaN compares False: customers without a transaction stay out of `active`.
        active = last_age <= rules.lookback_days * _DAY_S
    # The first transaction ever cannot be later than the last one in the lookback.
    first = np.where(active, np.fmin(first, last), first)
    has_any = ~np.isnan(first)

    recency = np.full(size, -1, dtype=np.int64)
    recency[active] = np.floor(np.maximum(last_age[active], 0.0) / _DAY_S).astype(np.int64)
    r = np.zeros(size, dtype=np.int8)
    f = np.zeros(size, dtype=np.int8)
    a = np.zeros(size, dtype=np.int8)
    r[active] = quintile_scores(-recency[active])
    f[active] = quintile_scores(freq[active])
    a[active] = quintile_scores(amt[active])

    with np.errstate(invalid="ignore"):
        new_window = rules.new_days * _DAY_S
        is_new = np.where(has_any, now_s - first <= new_window, now_s - created <= new_window)
        is_inactive = ~active | (last_age > rules.inactive_days * _DAY_S)
        is_at_risk = last_age > rules.at_risk_days * _DAY_S
    is_best = (f >= 4) & (a >= 4)
    segment = np.select(
        [is_new, is_inactive, is_at_risk, is_best],
        [0, 1, 2, 3],
        default=4,
    ).astype(np.int8)
    return SegmentColumns(segment=segment, r=r, f=f, a=a, recency_days=recency)


def compute_segments(
    customers: Sequence[CustomerActivity], now: datetime, rules: SegmentRules
) -> list[CustomerSegment]:
    """Segment and FRAT figures of every customer, in input order, as of `now` (aware)."""
    nan = float("nan")
    cols = segment_columns(
        now,
        rules,
        [c.created_at.timestamp() for c in customers],
        [nan if c.first_tx_ts is None else c.first_tx_ts.timestamp() for c in customers],
        [nan if c.last_tx_ts is None else c.last_tx_ts.timestamp() for c in customers],
        [c.frequency for c in customers],
        [float(c.amount) for c in customers],
    )
    result: list[CustomerSegment] = []
    segments = cols.segment.tolist()
    rs, fs, as_, recency = (
        cols.r.tolist(),
        cols.f.tolist(),
        cols.a.tolist(),
        cols.recency_days.tolist(),
    )
    for i, c in enumerate(customers):
        scored = recency[i] >= 0
        result.append(
            CustomerSegment(
                customer_id=c.customer_id,
                segment=FRAT_SEGMENTS[segments[i]],
                r=rs[i] if scored else None,
                f=fs[i] if scored else None,
                a=as_[i] if scored else None,
                recency_days=recency[i] if scored else None,
                frequency=c.frequency,
                amount=float(c.amount),
                types=c.types,
            )
        )
    return result


def segment_counts(segments: Iterable[CustomerSegment]) -> dict[str, int]:
    """`GET /v1/segments`' figures: every FRAT segment present, zero when empty."""
    counts = Counter(s.segment for s in segments)
    return {str(s): counts.get(s, 0) for s in FRAT_SEGMENTS}
