"""The reference for basket rules: mlxtend's fpgrowth + association_rules on the same baskets.

geopush's rule set is defined as mlxtend's (every split of every frequent itemset, kept at
confidence ≥ min_confidence), then filtered at lift ≥ min_lift; this helper applies the same
lift filter to mlxtend's output, so the two are compared rule for rule.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

from geopush.insights.itemsets import Baskets
from geopush.insights.rules import RuleParams, mine_rules

GROCERIES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "groceries_baskets.csv.gz"

RuleKey = tuple[frozenset[str], frozenset[str]]
Metrics = tuple[float, float, float]


def groceries() -> list[list[str]]:
    """The 9,835 baskets, names kept exactly (a few end with a space)."""
    with gzip.open(GROCERIES, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").split(",") for line in f if line.strip("\n")]


def mlxtend_rules(baskets: list[list[str]], params: RuleParams) -> dict[RuleKey, Metrics]:
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    encoder = TransactionEncoder()
    table = encoder.fit(baskets).transform(baskets)
    frame = pd.DataFrame(table, columns=encoder.columns_)
    if frame.shape[1] == 0:
        return {}
    itemsets = fpgrowth(frame, min_support=params.min_support, use_colnames=True,
                        max_len=params.max_len)
    if len(itemsets) == 0 or itemsets["itemsets"].map(len).max() < 2:
        return {}
    with warnings.catch_warnings():
        # Metrics geopush does not use (certainty, conviction) divide by zero when a
        # consequent is in every basket; numpy warns, the three compared are unaffected.
        warnings.simplefilter("ignore", RuntimeWarning)
        rules = association_rules(itemsets, num_itemsets=len(frame), metric="confidence",
                                  min_threshold=params.min_confidence)
    rules = rules[rules["lift"] >= params.min_lift]
    return {
        (frozenset(r.antecedents), frozenset(r.consequents)): (r.support, r.confidence, r.lift)
        for r in rules.itertuples()
    }


def geopush_rules(baskets: list[list[str]], params: RuleParams
                  ) -> tuple[dict[RuleKey, Metrics], dict[RuleKey, int]]:
    mined = mine_rules(Baskets.from_lists(baskets), params)
    metrics = {(frozenset(r.antecedent), frozenset(r.consequent)):
               (r.support, r.confidence, r.lift) for r in mined}
    counts = {(frozenset(r.antecedent), frozenset(r.consequent)): r.count for r in mined}
    assert len(metrics) == len(mined), "a rule listed twice"
    return metrics, counts


def assert_same_rules(baskets: list[list[str]], params: RuleParams) -> int:
    """Every rule equal, every metric within 1e-9, counts consistent; the number of rules."""
    expected = mlxtend_rules(baskets, params)
    got, counts = geopush_rules(baskets, params)
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    assert not missing and not extra, (sorted(map(str, missing))[:5], sorted(map(str, extra))[:5])
    for key, (support, confidence, lift) in expected.items():
        ours = got[key]
        assert abs(ours[0] - support) <= 1e-9, (key, ours, support)
        assert abs(ours[1] - confidence) <= 1e-9, (key, ours, confidence)
        assert abs(ours[2] - lift) <= 1e-9, (key, ours, lift)
        assert counts[key] == round(support * len(baskets))
    return len(expected)
