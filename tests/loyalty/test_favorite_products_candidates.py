"""Each member's candidate list of a favorite-products offer: from their purchase history by
category, from the fixed list, or both."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.favorites.selectors import favorite_candidates
from loyalty.models import FavoriteProductsOffer
from tests.loyalty.factories import (
    FavoriteProductsOfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

Source = FavoriteProductsOffer.CandidateSource


def bought(member, product, *, days_before_start=10, quantity=1, offer=None):
    start = offer.starts_at if offer is not None else None
    placed_at = start - timedelta(days=days_before_start)
    OrderLineFactory(order=OrderFactory(member=member, placed_at=placed_at), product=product,
                     quantity=quantity)


def skus(offer, member):
    return [c.sku for c in favorite_candidates(member_id=member.pk, offers=[offer])[offer.pk]]


@pytest.fixture
def history_offer():
    return FavoriteProductsOfferFactory(candidate_source=Source.HISTORY, history_days=180,
                                        history_categories=2, history_products=5)


def test_history_offers_products_of_the_categories_the_member_bought_most(history_offer):
    member = MemberFactory()
    espresso = ProductFactory(sku="espresso", name="Espresso", category="coffee")
    ProductFactory(sku="filter", name="Filter coffee", category="coffee")
    green = ProductFactory(sku="green", name="Green tea", category="tea")
    crisps = ProductFactory(sku="crisps", name="Crisps", category="snacks")
    bought(member, espresso, quantity=5, offer=history_offer)
    bought(member, green, quantity=3, offer=history_offer)
    bought(member, crisps, quantity=1, offer=history_offer)

    candidates = skus(history_offer, member)

    assert sorted(candidates) == ["espresso", "filter", "green"]


def test_history_lists_the_products_the_member_bought_most_first(history_offer):
    member = MemberFactory()
    latte = ProductFactory(sku="latte", name="Latte", category="coffee")
    mocha = ProductFactory(sku="mocha", name="Mocha", category="coffee")
    ProductFactory(sku="americano", name="Americano", category="coffee")
    bought(member, latte, quantity=1, offer=history_offer)
    bought(member, mocha, quantity=4, offer=history_offer)

    assert skus(history_offer, member) == ["mocha", "latte", "americano"]


def test_history_gives_at_most_history_products_candidates(history_offer):
    member = MemberFactory()
    products = [ProductFactory(sku=f"coffee-{n}", name=f"Coffee {n}", category="coffee")
                for n in range(8)]
    bought(member, products[7], quantity=2, offer=history_offer)

    candidates = skus(history_offer, member)

    assert candidates == ["coffee-7", "coffee-0", "coffee-1", "coffee-2", "coffee-3"]


def test_only_purchases_in_the_days_before_the_offer_started_count(history_offer):
    member = MemberFactory()
    old = ProductFactory(sku="old", category="tea")
    recent = ProductFactory(sku="recent", category="coffee")
    during = ProductFactory(sku="during", category="snacks")
    bought(member, old, days_before_start=181, quantity=9, offer=history_offer)
    bought(member, recent, days_before_start=179, offer=history_offer)
    # Bought after the offer started: the list stays as it was when the offer began.
    bought(member, during, days_before_start=-0.5, quantity=9, offer=history_offer)

    assert skus(history_offer, member) == ["recent"]


def test_another_members_purchases_do_not_shape_the_list(history_offer):
    member, neighbour = MemberFactory(), MemberFactory()
    bought(neighbour, ProductFactory(sku="theirs", category="wine"), offer=history_offer)

    assert skus(history_offer, member) == []


def test_the_fixed_list_is_every_members_candidates():
    ann, bob = MemberFactory(), MemberFactory()
    offer = FavoriteProductsOfferFactory(
        candidate_source=Source.FIXED,
        products=[ProductFactory(sku="a", name="A"), ProductFactory(sku="b", name="B")])
    bought(bob, ProductFactory(sku="c", category="coffee"), offer=offer)

    assert skus(offer, ann) == ["a", "b"]
    assert skus(offer, bob) == ["a", "b"]


def test_both_gives_the_fixed_list_and_history_products_beside_it():
    member = MemberFactory()
    fixed = ProductFactory(sku="fixed", name="Fixed", category="coffee")
    offer = FavoriteProductsOfferFactory(candidate_source=Source.BOTH, products=[fixed],
                                         history_categories=1, history_products=2)
    ProductFactory(sku="beans", name="Beans", category="coffee")
    ProductFactory(sku="grinder", name="Grinder", category="coffee")
    ProductFactory(sku="mug", name="Mug", category="coffee")
    bought(offer=offer, member=member, product=fixed, quantity=3)

    candidates = favorite_candidates(member_id=member.pk, offers=[offer])[offer.pk]

    # The fixed product does not use up one of the two history places.
    assert [(c.sku, c.fixed) for c in candidates] == [
        ("fixed", True), ("beans", False), ("grinder", False)]


def test_candidates_of_several_offers_come_from_one_query(django_assert_num_queries):
    member = MemberFactory()
    history = FavoriteProductsOfferFactory(candidate_source=Source.HISTORY)
    fixed = FavoriteProductsOfferFactory(candidate_source=Source.FIXED,
                                         products=[ProductFactory(sku="f", category="tea")])
    both = FavoriteProductsOfferFactory(candidate_source=Source.BOTH,
                                        products=[ProductFactory(sku="g", category="tea")])
    bought(member, ProductFactory(sku="h", category="coffee"), offer=history)

    with django_assert_num_queries(1):
        found = favorite_candidates(member_id=member.pk, offers=[history, fixed, both])

    assert {offer_id: [c.sku for c in found[offer_id]] for offer_id in found} == {
        history.pk: ["h"], fixed.pk: ["f"], both.pk: ["h", "g"]}
