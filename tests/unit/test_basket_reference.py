"""Basket rules equal mlxtend's, rule for rule: real grocery baskets, planted associations,
edge cases."""

from __future__ import annotations

import random

import pytest

from geopush.insights.itemsets import Baskets, frequent_itemsets, min_count
from geopush.insights.rules import RuleParams, mine_rules
from tests.basket_reference import assert_same_rules, groceries


@pytest.fixture(scope="module")
def grocery_baskets() -> list[list[str]]:
    baskets = groceries()
    assert len(baskets) == 9835
    assert len({item for b in baskets for item in b}) == 169
    return baskets


@pytest.mark.parametrize("params", [
    RuleParams(),  # the API's defaults: support 0.01, confidence 0.2, lift 1, max_len 3
    RuleParams(min_support=0.003, min_confidence=0.1, min_lift=0.0, max_len=4),
    RuleParams(min_support=0.02, min_confidence=0.0, min_lift=1.5, max_len=2),
])
def test_grocery_rules_equal_mlxtend(grocery_baskets: list[list[str]],
                                     params: RuleParams) -> None:
    assert assert_same_rules(grocery_baskets, params) > 0


def test_grocery_defaults_find_the_known_rules(grocery_baskets: list[list[str]]) -> None:
    rules = mine_rules(Baskets.from_lists(grocery_baskets), RuleParams())
    assert rules == sorted(rules, key=lambda r: (-r.lift, -r.confidence, -r.support,
                                                 r.antecedent, r.consequent))
    by_items = {(r.antecedent, r.consequent): r for r in rules}
    # The data set's best-known rule: root vegetables and other vegetables → whole milk.
    rule = by_items[(("other vegetables", "root vegetables"), ("whole milk",))]
    assert rule.count == 228 and abs(rule.confidence - 228 / 466) < 1e-12


def _planted(seed: int, n: int) -> list[list[str]]:
    """Background noise over 40 items, with computer → printer and {tea, lemon} → honey."""
    rng = random.Random(seed)
    items = [f"item{i:02d}" for i in range(40)]
    baskets = []
    for _ in range(n):
        basket = set(rng.sample(items, rng.randint(0, 6)))
        if rng.random() < 0.15:
            basket.add("computer")
            if rng.random() < 0.7:
                basket.add("printer")
        if rng.random() < 0.1:
            basket |= {"tea", "lemon"}
            if rng.random() < 0.8:
                basket.add("honey")
        baskets.append(sorted(basket))
    return baskets


@pytest.mark.parametrize("seed", [1, 2])
def test_planted_associations_are_found_and_equal_mlxtend(seed: int) -> None:
    baskets = _planted(seed, 3000)
    params = RuleParams(min_support=0.01, min_confidence=0.3, min_lift=1.0, max_len=3)
    assert_same_rules(baskets, params)
    rules = mine_rules(Baskets.from_lists(baskets), params)
    by_items = {(r.antecedent, r.consequent): r for r in rules}
    # Planted: P(printer | computer) = 0.7 against about 0.1 overall; honey likewise.
    assert by_items[(("computer",), ("printer",))].lift > 4
    assert by_items[(("lemon", "tea"), ("honey",))].lift > 4
    noise = [r for r in rules if not {"computer", "printer", "tea", "lemon", "honey"}
             & set(r.antecedent + r.consequent)]
    assert all(r.lift < 2 for r in noise)


EDGE_CASES = {
    "empty baskets count in the total": [[], [], ["a", "b"], ["a", "b"], ["a"], []],
    "one-item baskets only": [["a"], ["b"], ["a"], ["c"]],
    "every basket the same": [["x", "y", "z"]] * 5,
    "ties everywhere": [["a", "b"], ["c", "d"], ["a", "b"], ["c", "d"], ["a", "c"],
                        ["b", "d"]],
    # confidence exactly 0.5 and support exactly 0.25: thresholds met with equality
    "thresholds met exactly": [["p", "q"], ["p"], ["q", "r"], ["p", "q", "r"], ["r"],
                               ["s"], ["p", "r"], ["q"]],
    "names with spaces and commas": [["cream cheese ", "a,b"], ["cream cheese ", "a,b"],
                                     ["a,b"]],
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
@pytest.mark.parametrize("params", [
    RuleParams(min_support=0.25, min_confidence=0.5, min_lift=0.0, max_len=3),
    RuleParams(min_support=0.01, min_confidence=0.0, min_lift=1.0, max_len=2),
])
def test_edge_cases_equal_mlxtend(name: str, params: RuleParams) -> None:
    assert_same_rules(EDGE_CASES[name], params)


def test_no_baskets_no_rules() -> None:
    assert mine_rules(Baskets.from_lists([]), RuleParams()) == []
    assert mine_rules(Baskets.from_lists([[], []]), RuleParams()) == []


def test_max_len_bounds_the_itemsets() -> None:
    baskets = Baskets.from_lists([["a", "b", "c", "d"]] * 3)
    sizes = {len(s) for s in frequent_itemsets(baskets, 0.5, 2)}
    assert sizes == {1, 2}
    assert len(frequent_itemsets(baskets, 0.5, None)) == 15


@pytest.mark.parametrize("support, n, need", [(0.3, 10, 3), (0.01, 9835, 99),
                                               (0.25, 8, 2), (1.0, 7, 7), (1e-9, 5, 1)])
def test_min_count_is_the_least_count_reaching_the_support(support: float, n: int,
                                                           need: int) -> None:
    assert min_count(support, n) == need
    assert need / n >= support and (need == 1 or (need - 1) / n < support)


def test_a_search_past_its_itemset_limit_stops() -> None:
    from geopush.insights.itemsets import TooManyItemsets

    baskets = Baskets.from_lists([[f"i{k}" for k in range(12)]] * 4)  # 4,095 itemsets
    assert len(frequent_itemsets(baskets, 0.5, None, max_itemsets=4095)) == 4095
    with pytest.raises(TooManyItemsets) as stopped:
        frequent_itemsets(baskets, 0.5, None, max_itemsets=4094)
    assert "raise min_support" in str(stopped.value)
