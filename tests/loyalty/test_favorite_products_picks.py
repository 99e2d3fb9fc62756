"""A member's picks of a favorite-products offer through the app's API: replaced within the
limit, and every refusal answered with its stable code and nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.favorites.services import FavoritePicksRefused, favorite_picks_replace
from loyalty.models import FavoriteProductPick, FavoriteProductsSelection
from members.services import member_data_export
from tests.loyalty.factories import (
    FavoriteProductsOfferFactory,
    LoyaltyAccountFactory,
    ProductFactory,
    TierFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann")


@pytest.fixture
def products():
    return [ProductFactory(sku=f"P{n}", name=f"Product {n}") for n in range(5)]


@pytest.fixture
def offer(products):
    return FavoriteProductsOfferFactory(pick_limit=2, products=products)


def picks_url(offer) -> str:
    return f"/api/v1/me/favorite-products/{offer.pk}/picks/"


def picked(member, offer) -> set[str]:
    return set(FavoriteProductPick.objects.filter(selection__member=member,
                                                  selection__offer=offer)
               .values_list("product__sku", flat=True))


def test_a_member_picks_products_up_to_the_limit(member_api_client, ann, offer, products):
    reply = member_api_client(ann).put(
        picks_url(offer), {"product_ids": [products[0].pk, products[1].pk]}, format="json")

    assert reply.status_code == 200
    assert {pick["sku"] for pick in reply.json()["picks"]} == {"P0", "P1"}
    assert picked(ann, offer) == {"P0", "P1"}


def test_picks_can_be_sent_with_post_too(member_api_client, ann, offer, products):
    reply = member_api_client(ann).post(picks_url(offer), {"product_ids": [products[2].pk]},
                                        format="json")

    assert reply.status_code == 200
    assert picked(ann, offer) == {"P2"}


def test_saving_replaces_the_picks_and_kept_ones_keep_their_time(ann, offer, products):
    earlier = timezone.now() - timedelta(hours=3)
    favorite_picks_replace(member=ann, offer=offer, now=earlier,
                           product_ids=[products[0].pk, products[1].pk])

    selection = favorite_picks_replace(member=ann, offer=offer,
                                       product_ids=[products[1].pk, products[2].pk])

    times = dict(FavoriteProductPick.objects.filter(selection=selection)
                 .values_list("product__sku", "picked_at"))
    assert set(times) == {"P1", "P2"}
    assert times["P1"] == earlier and times["P2"] > earlier
    assert selection.updated_at > earlier


def test_an_empty_list_drops_every_pick_and_keeps_the_selection(ann, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])

    favorite_picks_replace(member=ann, offer=offer, product_ids=[])

    assert picked(ann, offer) == set()
    assert FavoriteProductsSelection.objects.filter(member=ann, offer=offer).exists()


def test_a_pick_dropped_from_the_fixed_list_may_be_kept(ann, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])
    offer.products.remove(products[0])

    favorite_picks_replace(member=ann, offer=offer,
                           product_ids=[products[0].pk, products[1].pk])

    assert picked(ann, offer) == {"P0", "P1"}


def test_the_same_product_twice_counts_once(member_api_client, ann, offer, products):
    reply = member_api_client(ann).put(
        picks_url(offer), {"product_ids": [products[0].pk] * 3 + [products[1].pk]},
        format="json")

    assert reply.status_code == 200
    assert picked(ann, offer) == {"P0", "P1"}


# --- refusals: a stable code, and nothing changed -------------------------------------------

@pytest.fixture
def ann_picked_p0(ann, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])
    return FavoriteProductsSelection.objects.get(member=ann, offer=offer)


def assert_unchanged(selection) -> None:
    fresh = FavoriteProductsSelection.objects.get(pk=selection.pk)
    assert fresh.updated_at == selection.updated_at
    assert picked(selection.member, selection.offer) == {"P0"}


def test_more_picks_than_the_limit_are_refused(member_api_client, ann, offer, products,
                                                ann_picked_p0):
    reply = member_api_client(ann).put(
        picks_url(offer), {"product_ids": [p.pk for p in products[1:4]]}, format="json")

    assert reply.status_code == 400
    assert reply.json()["code"] == "too_many_picks"
    assert_unchanged(ann_picked_p0)


@pytest.mark.parametrize(("passed", "code"), [
    ("picks_locked_at", "picks_locked"),
    ("ends_at", "offer_inactive"),
], ids=["after the deadline", "after the offer ended"])
def test_picks_the_offers_time_no_longer_allows_are_refused(
        member_api_client, ann, offer, products, ann_picked_p0, passed, code):
    setattr(offer, passed, timezone.now() - timedelta(seconds=1))
    offer.save()

    reply = member_api_client(ann).put(picks_url(offer), {"product_ids": [products[1].pk]},
                                       format="json")

    assert reply.status_code == 409
    assert reply.json()["code"] == code
    assert_unchanged(ann_picked_p0)


def test_a_product_not_among_the_candidates_is_refused(member_api_client, ann, offer,
                                                       products, ann_picked_p0):
    stranger = ProductFactory(sku="elsewhere", category="garden")

    reply = member_api_client(ann).put(
        picks_url(offer), {"product_ids": [products[1].pk, stranger.pk]}, format="json")

    assert reply.status_code == 400
    assert reply.json()["code"] == "not_a_candidate"
    assert str(stranger.pk) in reply.json()["detail"]
    assert_unchanged(ann_picked_p0)


def test_a_refused_first_save_leaves_no_selection_behind(ann, offer):
    stranger = ProductFactory(sku="elsewhere", category="garden")

    with pytest.raises(FavoritePicksRefused):
        favorite_picks_replace(member=ann, offer=offer, product_ids=[stranger.pk])

    assert not FavoriteProductsSelection.objects.filter(member=ann).exists()


def test_picks_of_an_offer_not_started_yet_are_refused(member_api_client, ann, products):
    future = FavoriteProductsOfferFactory(products=products,
                                          starts_at=timezone.now() + timedelta(days=1))

    reply = member_api_client(ann).put(picks_url(future), {"product_ids": [products[0].pk]},
                                       format="json")

    assert reply.status_code == 409
    assert reply.json()["code"] == "offer_inactive"
    assert not FavoriteProductsSelection.objects.filter(member=ann).exists()


def test_a_body_without_a_list_of_ids_names_the_field(member_api_client, ann, offer):
    reply = member_api_client(ann).put(picks_url(offer), {"product_ids": "P1"}, format="json")

    assert reply.status_code == 400
    assert "product_ids" in reply.json()


# --- audience ---------------------------------------------------------------------------------

def test_an_offer_for_other_tiers_is_not_found_for_the_member(member_api_client, ann,
                                                              products):
    LoyaltyAccountFactory(member=ann, tier=TierFactory(code="bronze"))
    gold_only = FavoriteProductsOfferFactory(products=products,
                                             tiers=[TierFactory(code="gold")])

    client = member_api_client(ann)
    listed = client.get("/api/v1/me/favorite-products/").json()["offers"]
    reply = client.put(picks_url(gold_only), {"product_ids": [products[0].pk]}, format="json")

    assert listed == []
    assert reply.status_code == 404
    assert not FavoriteProductsSelection.objects.exists()


def test_an_offer_for_the_members_tier_is_theirs(member_api_client, ann, products):
    gold = TierFactory(code="gold")
    LoyaltyAccountFactory(member=ann, tier=gold)
    offer = FavoriteProductsOfferFactory(products=products, tiers=[gold])

    listed = member_api_client(ann).get("/api/v1/me/favorite-products/").json()["offers"]

    assert [entry["id"] for entry in listed] == [offer.pk]


def test_the_members_data_export_lists_their_picks(ann, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[3].pk])

    export = member_data_export(member=ann, by=None)

    assert [(pick["offer"], pick["product_sku"]) for pick in export["favorite_products"]] == [
        (offer.name, "P3")]
