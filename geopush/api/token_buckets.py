"""Token buckets by key, in a map of bounded size that forgets the least recently used key.

A key forgotten and seen again starts with a full bucket. With the least recently used key
evicted first, that key has been idle the longest, and its bucket would usually have refilled
anyway (`burst / rate` seconds: 3 s for the ping limits); it could only gain tokens if more
than `max_keys` other keys arrived within that time. Memory stays bounded however many
devices or addresses an attacker invents, without the all-at-once reset of clearing the map
(which handed every busy device a fresh burst at the same moment).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable


class TokenBuckets:
    """`rate_per_s` tokens a second per key, at most `burst` saved up, `max_keys` keys."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("need rate_per_s > 0, burst >= 1, max_keys >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        # key -> [tokens, at]; most recently used last
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def take(self, key: Hashable, now: float) -> float:
        """Take one token for `key` at monotonic time `now`.

        Returns 0.0 when granted, else the seconds until a token will be there (the token
        is not taken).
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        if tokens < 1.0:
            bucket[0], bucket[1] = tokens, now
            return (1.0 - tokens) / self.rate
        bucket[0], bucket[1] = tokens - 1.0, now
        return 0.0


def retry_after(wait_s: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
