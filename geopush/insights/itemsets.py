"""Frequent itemsets over baskets: an exact depth-first search over bitsets (Eclat).

Each frequent item's baskets are one bitset, held as a Python integer (bit b set when basket
b holds the item), so the baskets holding an itemset are the AND of its items' bitsets and
their number is `int.bit_count()` — both run in C over 64-bit words, a million baskets in
tens of microseconds. The search extends an itemset only by items after its last one and
keeps an extension only when it reaches the minimum count, so every frequent itemset is
found exactly once and nothing infrequent is extended: the same set FP-growth finds.

Memory is bounded by the bitsets alive at once: at most `max_len` levels of at most one
bitset per frequent item (n_baskets / 8 bytes each), whatever the number of itemsets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from geopush.errors import Unprocessable

Itemset = tuple[int, ...]


class TooManyItemsets(Unprocessable):
    """The thresholds let through more itemsets than the caller allows (a guard against a
    query so loose that mining it would take the machine for hours): 422."""

    code = "too_many_itemsets"

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} frequent itemsets: raise min_support or lower"
                         " max_len")
        self.limit = limit

    def __reduce__(self) -> tuple[type[TooManyItemsets], tuple[int]]:
        # Raised in a mining child process and pickled back by its limit.
        return (TooManyItemsets, (self.limit,))


@dataclass(frozen=True)
class Baskets:
    """Baskets in compressed rows: basket b holds `items[indptr[b]:indptr[b + 1]]`.

    Item ids are indexes into `names`; a basket lists each of its items once.
    """

    indptr: np.ndarray
    items: np.ndarray
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_lists(cls, baskets: Iterable[Iterable[str]]) -> Baskets:
        """From baskets of item names (repeats within a basket count once)."""
        sets = [set(b) for b in baskets]
        names = tuple(sorted(set().union(*sets))) if sets else ()
        ids = {name: i for i, name in enumerate(names)}
        indptr = np.zeros(len(sets) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(s) for s in sets])
        items = np.fromiter((ids[x] for s in sets for x in sorted(s)), dtype=np.int32,
                            count=int(indptr[-1]))
        return cls(indptr=indptr, items=items, names=names)

    def basket_lists(self) -> list[list[str]]:
        """Back to lists of names (for tests and the reference comparison)."""
        names = self.names
        return [[names[i] for i in self.items[self.indptr[b]:self.indptr[b + 1]]]
                for b in range(self.count)]


def min_count(min_support: float, n_baskets: int) -> int:
    """The fewest baskets a frequent itemset needs: the least c with c / n ≥ min_support.

    `ceil(min_support * n)` (what mlxtend's fpgrowth uses inside) can be one off when the
    product is off by a rounding error (0.3 × 10 = 3.0000000000000004); the support as
    computed, count / n, is what the definition and the answer compare, so it decides.
    """
    need = max(1, math.ceil(min_support * n_baskets))
    while need > 1 and (need - 1) / n_baskets >= min_support:
        need -= 1
    while need / n_baskets < min_support:
        need += 1
    return need


def item_bitsets(baskets: Baskets, items: Sequence[int]) -> dict[int, int]:
    """For each of `items`, the bitset of the baskets holding it."""
    n = baskets.count
    basket_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(baskets.indptr))
    order = np.argsort(baskets.items, kind="stable")
    sorted_items = baskets.items[order]
    sorted_baskets = basket_of[order]
    del basket_of, order
    bounds = np.searchsorted(sorted_items, np.arange(len(baskets.names) + 1))
    out: dict[int, int] = {}
    bits = np.zeros(n, dtype=bool)
    for item in items:
        bits[:] = False
        bits[sorted_baskets[bounds[item]:bounds[item + 1]]] = True
        out[item] = int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")
    return out


def frequent_itemsets(baskets: Baskets, min_support: float, max_len: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      max_itemsets: int | None = None) -> dict[Itemset, int]:
    """Every itemset (of at most `max_len` items) with support ≥ `min_support`, and its count.

    Itemsets are tuples of item ids in increasing order. `progress(done, total)` is called
    as each frequent item's branch of the search is finished. Raises TooManyItemsets as
    soon as more than `max_itemsets` are found.
    """
    n = baskets.count
    if n == 0 or (max_len is not None and max_len < 1):
        return {}
    need = min_count(min_support, n)
    counts = np.bincount(baskets.items, minlength=len(baskets.names))
    frequent = [int(i) for i in np.flatnonzero(counts >= need)]
    bitsets = item_bitsets(baskets, frequent)
    found: dict[Itemset, int] = {}
    top = [(item, bitsets[item], int(counts[item])) for item in frequent]
    del bitsets

    limit = max_itemsets if max_itemsets is not None else -1

    def extend(prefix: Itemset, candidates: list[tuple[int, int, int]]) -> None:
        for k, (item, bits, count) in enumerate(candidates):
            itemset = (*prefix, item)
            found[itemset] = count
            if len(found) > limit >= 0:
                raise TooManyItemsets(limit)
            if max_len is not None and len(itemset) >= max_len:
                continue
            deeper = []
            for other, other_bits, _ in candidates[k + 1:]:
                both = bits & other_bits
                c = both.bit_count()
                if c >= need:
                    deeper.append((other, both, c))
            if deeper:
                extend(itemset, deeper)

    for k in range(len(top)):
        # One top-level branch at a time, so progress can be told between them.
        item, bits, count = top[k]
        found[(item,)] = count
        if len(found) > limit >= 0:
            raise TooManyItemsets(limit)
        if max_len is None or max_len > 1:
            deeper = []
            for other, other_bits, _ in top[k + 1:]:
                both = bits & other_bits
                c = both.bit_count()
                if c >= need:
                    deeper.append((other, both, c))
            if deeper:
                extend((item,), deeper)
        if progress is not None:
            progress(k + 1, len(top))
    return found
