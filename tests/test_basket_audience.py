"""The `recommended` and `bought_all` audiences in the decision (pure, no I/O)."""

from __future__ import annotations

import pytest

from geopush.campaigns.offers import Audience, OfferError, parse_offer_fields
from geopush.codes import SuppressionReason as R
from tests.test_campaign_decide import baseline, with_facts, with_offer

RECOMMENDED = ("printer", "ink", "paper", "cables")


@pytest.mark.parametrize(("category", "recommended", "reason"), [
    ("printer", RECOMMENDED, None),
    ("paper", RECOMMENDED, None),                       # third: still in the top 3
    ("cables", RECOMMENDED, R.AUDIENCE_MISMATCH),       # fourth: not in the top 3
    ("printer", (), R.AUDIENCE_MISMATCH),               # nothing recommended
    (None, RECOMMENDED, R.AUDIENCE_MISMATCH),           # no category to match
])
def test_recommended_matches_the_top_three(category: str | None,
                                           recommended: tuple[str, ...],
                                           reason: R | None) -> None:
    s = with_offer(audience=Audience(recommended=True), category=category)(baseline())
    s = with_facts(recommended_categories=recommended, consent_categories=None,
                   interests=None)(s)
    assert s.reason() == reason


@pytest.mark.parametrize(("bought", "reason"), [
    ({"bread", "butter"}, None),
    ({"bread", "butter", "milk"}, None),
    ({"bread"}, R.AUDIENCE_MISMATCH),
    ({"bread", "butter", "jam"}, R.AUDIENCE_MISMATCH),
])
def test_bought_all_needs_every_antecedent(bought: set[str], reason: R | None) -> None:
    audience = Audience(bought_all=("bread", "butter"), not_bought=("jam",))
    s = with_offer(audience=audience)(baseline())
    assert with_facts(purchase_categories=frozenset(bought))(s).reason() == reason


@pytest.mark.parametrize(("audience", "field"), [
    ({"recommended": "yes"}, "audience.recommended"),
    ({"bought_all": ["a"], "not_bought": ["a"]}, "audience"),
    ({"bought_all": "a"}, "audience.bought_all"),
])
def test_bad_audiences_are_refused(audience: dict, field: str) -> None:
    with pytest.raises(OfferError) as refused:
        parse_offer_fields({"audience": audience}, partial=True)
    assert refused.value.field == field
