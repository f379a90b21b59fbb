"""When to try a delivery again (SPEC section 6): exponential backoff with full jitter.

Full jitter — a uniform draw in [0, min(cap, base·2^(attempt-1))] — rather than
decorrelated jitter, because it is stateless: the delay depends only on the attempt number
the outbox row already stores, so any sender process can compute it after a crash without
the previous delay, and it spreads a burst of failures (a 30-second FCM outage hitting
thousands of rows at once) as evenly as decorrelated jitter does (AWS Architecture Blog,
"Exponential Backoff and Jitter", 2015).

The server's word wins over the draw: never earlier than Retry-After, and at least 60 s
on a quota error without one. Rows that share such a floor are spread over up to `base`
seconds past it, so they do not all come back in the same instant.
"""

from __future__ import annotations

import random

DEFAULT_BASE_S = 1.0
DEFAULT_CAP_S = 300.0
QUOTA_MIN_DELAY_S = 60.0
# 2**64 s is far past any cap; stop the exponent there so huge attempt counts stay floats.
_MAX_EXPONENT = 64


def backoff_ceiling(
    attempt: int, base: float = DEFAULT_BASE_S, cap: float = DEFAULT_CAP_S
) -> float:
    """The upper end of the jitter window after `attempt` failed attempts."""
    return min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))


def next_delay(
    attempt: int,
    retry_after: float | None,
    rng: random.Random,
    base: float = DEFAULT_BASE_S,
    cap: float = DEFAULT_CAP_S,
    *,
    quota: bool = False,
) -> float:
    """Seconds to wait before the next try, `attempt` (>= 1) attempts having failed.

    `retry_after` is the server's Retry-After in seconds, if it sent one; `quota` says the
    failure was QUOTA_EXCEEDED.
    """
    if attempt < 1:
        raise ValueError("attempt counts the attempts made so far: at least 1")
    if base <= 0 or cap < base:
        raise ValueError("need 0 < base <= cap")
    delay = rng.uniform(0.0, backoff_ceiling(attempt, base, cap))
    if retry_after is not None:
        floor = max(0.0, retry_after)
    else:
        floor = QUOTA_MIN_DELAY_S if quota else 0.0
    if delay < floor:
        delay = floor + rng.uniform(0.0, base)
    return delay
