"""Association rules from frequent itemsets, with the standard definitions.

The rule set is mlxtend's (`association_rules` after `fpgrowth`): every frequent itemset of
two items or more gives one candidate rule per split into a non-empty antecedent A and
consequent C, kept when confidence ≥ min_confidence; geopush then keeps those with
lift ≥ min_lift. Consequents may hold several items, as in mlxtend; cross-selling and
recommendations use the single-item ones (a rule A → {c} names one category to offer).

support(X) = baskets holding every item of X / all baskets; confidence = support(A ∪ C) /
support(A); lift = confidence / support(C). Each is computed with the same floating-point
operations, in the same order, as mlxtend, so both agree to the last bit (and the rule
set at a threshold is the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from geopush.insights.itemsets import Baskets, Itemset, frequent_itemsets


@dataclass(frozen=True)
class Rule:
    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    support: float
    confidence: float
    lift: float
    count: int

    def as_json(self) -> dict[str, Any]:
        return {"antecedent": list(self.antecedent), "consequent": list(self.consequent),
                "support": self.support, "confidence": self.confidence, "lift": self.lift,
                "count": self.count}


@dataclass(frozen=True)
class RuleParams:
    """Thresholds of one mining run (SPEC section 12 defaults)."""

    min_support: float = 0.01
    min_confidence: float = 0.2
    min_lift: float = 1.0
    max_len: int = 3

    def as_json(self) -> dict[str, Any]:
        return {"min_support": self.min_support, "min_confidence": self.min_confidence,
                "min_lift": self.min_lift, "max_len": self.max_len}


def rule_order(rule: Rule) -> tuple[Any, ...]:
    """Best lift first; ties by confidence, support, then the items, so the order is stable."""
    return (-rule.lift, -rule.confidence, -rule.support, rule.antecedent, rule.consequent)


def rules_from_itemsets(itemsets: dict[Itemset, int], names: tuple[str, ...], n_baskets: int,
                        min_confidence: float, min_lift: float) -> list[Rule]:
    """Every rule A → C of the frequent itemsets passing both thresholds, best lift first."""
    rules: list[Rule] = []
    for itemset, count in itemsets.items():
        size = len(itemset)
        if size < 2:
            continue
        s_ac = count / n_baskets
        for r in range(size - 1, 0, -1):
            for antecedent in combinations(itemset, r):
                consequent = tuple(i for i in itemset if i not in antecedent)
                s_a = itemsets[antecedent] / n_baskets
                s_c = itemsets[consequent] / n_baskets
                # (sAC·n) / (sA·n), not sAC / sA: mlxtend's very operations, so a rule at
                # exactly min_confidence is kept or dropped by both alike.
                confidence = (s_ac * n_baskets) / (s_a * n_baskets)
                if confidence < min_confidence:
                    continue
                lift = confidence / s_c
                if lift < min_lift:
                    continue
                rules.append(Rule(
                    antecedent=tuple(sorted(names[i] for i in antecedent)),
                    consequent=tuple(sorted(names[i] for i in consequent)),
                    support=s_ac, confidence=confidence, lift=lift, count=count,
                ))
    rules.sort(key=rule_order)
    return rules


def mine_rules(baskets: Baskets, params: RuleParams, progress: Any = None,
               max_itemsets: int | None = None) -> list[Rule]:
    """The association rules of `baskets` under `params`, best lift first."""
    itemsets = frequent_itemsets(baskets, params.min_support, params.max_len, progress,
                                 max_itemsets)
    return rules_from_itemsets(itemsets, baskets.names, baskets.count, params.min_confidence,
                               params.min_lift)
