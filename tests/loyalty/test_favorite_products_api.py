"""The favorite-products API: the member's own offers and picks, who may reach what, and the
feed of picks the loyalty engine reads."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.favorites.services import favorite_picks_replace
from loyalty.models import FavoriteProductPick, FavoriteProductsOffer
from tests.loyalty.factories import (
    FavoriteProductsOfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/favorite-products/"
FEED = "/api/v1/favorite-products/picks/"


@pytest.fixture
def ann():
    return MemberFactory(external_id="ANN")


@pytest.fixture
def bob():
    return MemberFactory(external_id="BOB")


@pytest.fixture
def products():
    return [ProductFactory(sku=f"P{n}", name=f"Product {n}", price=Decimal("2.50"))
            for n in range(4)]


@pytest.fixture
def offer(products):
    return FavoriteProductsOfferFactory(
        name="Pick your three", pick_limit=3, products=products,
        benefit=FavoriteProductsOffer.Benefit.EXTRA_POINTS, benefit_value=Decimal("50"),
        picks_locked_at=timezone.now() + timedelta(days=5))


def test_the_member_sees_the_running_offer_with_candidates_picks_and_rules(
        member_api_client, ann, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[1].pk])

    body = member_api_client(ann).get(ME).json()

    [entry] = body["offers"]
    assert entry["name"] == "Pick your three" and entry["limit"] == 3
    assert entry["benefit"] == {"kind": "extra_points", "value": "50.00"}
    assert entry["can_change"] is True and entry["picks_locked_at"] is not None
    assert [(c["sku"], c["picked"]) for c in entry["candidates"]] == [
        ("P0", False), ("P1", True), ("P2", False), ("P3", False)]
    assert [pick["sku"] for pick in entry["picks"]] == ["P1"]


def test_a_pick_taken_off_the_fixed_list_is_still_shown_picked(member_api_client, ann,
                                                                offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])
    offer.products.remove(products[0])

    [entry] = member_api_client(ann).get(ME).json()["offers"]

    assert [(c["sku"], c["picked"]) for c in entry["candidates"]] == [
        ("P1", False), ("P2", False), ("P3", False), ("P0", True)]


def test_offers_that_ended_or_have_not_started_are_not_listed(member_api_client, ann,
                                                              products):
    now = timezone.now()
    FavoriteProductsOfferFactory(products=products, starts_at=now - timedelta(days=40),
                                 ends_at=now - timedelta(days=1))
    FavoriteProductsOfferFactory(products=products, starts_at=now + timedelta(days=1))

    assert member_api_client(ann).get(ME).json() == {"offers": []}


def test_a_locked_offer_is_listed_and_says_picks_cannot_change(member_api_client, ann,
                                                               products):
    FavoriteProductsOfferFactory(products=products,
                                 picks_locked_at=timezone.now() - timedelta(hours=1))

    [entry] = member_api_client(ann).get(ME).json()["offers"]

    assert entry["can_change"] is False


def test_the_members_get_makes_a_fixed_number_of_queries_whatever_their_data(
        member_api_client, ann, products, django_assert_max_num_queries):
    client = member_api_client(ann)
    for n in range(30):
        order = OrderFactory(member=ann, placed_at=timezone.now() - timedelta(days=5 + n))
        OrderLineFactory(order=order, product=products[n % 4])
        OrderLineFactory(order=order, product=ProductFactory(category=f"category-{n % 5}"))
    for source in FavoriteProductsOffer.CandidateSource.values:
        offer = FavoriteProductsOfferFactory(candidate_source=source, products=products,
                                             pick_limit=4)
        favorite_picks_replace(member=ann, offer=offer, product_ids=[p.pk for p in products])

    # The token and its last use, the offers, all their candidates, all the picks.
    with django_assert_max_num_queries(5):
        reply = client.get(ME)

    assert reply.status_code == 200 and len(reply.json()["offers"]) == 3


# --- access -------------------------------------------------------------------------------------

def test_another_members_picks_are_neither_shown_nor_changed(member_api_client, ann, bob,
                                                              offer, products):
    favorite_picks_replace(member=bob, offer=offer, product_ids=[products[3].pk])

    seen = member_api_client(ann).get(ME).json()["offers"][0]
    member_api_client(ann).put(f"{ME}{offer.pk}/picks/", {"product_ids": [products[0].pk]},
                               format="json")

    assert seen["picks"] == [] and not any(c["picked"] for c in seen["candidates"])
    assert list(FavoriteProductPick.objects.filter(selection__member=bob)
                .values_list("product__sku", flat=True)) == ["P3"]


def test_an_offer_id_the_member_cannot_see_is_a_404_and_changes_nothing(member_api_client,
                                                                         ann, products):
    reply = member_api_client(ann).put(f"{ME}999999/picks/", {"product_ids": [products[0].pk]},
                                       format="json")

    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert not FavoriteProductPick.objects.exists()


def test_anonymous_callers_are_refused(offer, products):
    anonymous = APIClient()

    assert anonymous.get(ME).status_code == 401
    assert anonymous.put(f"{ME}{offer.pk}/picks/", {"product_ids": [products[0].pk]},
                         format="json").status_code == 401
    assert not FavoriteProductPick.objects.exists()


def test_anonymous_callers_get_no_feed(offer):
    # 403, as from every staff endpoint: the session scheme, first, sends no challenge.
    assert APIClient().get(FEED, {"offer": offer.pk}).status_code == 403


def test_a_staff_session_is_not_a_member_here(marketer_client, offer):
    assert marketer_client.get(ME).status_code == 401


def test_a_member_token_opens_no_staff_feed(member_api_client, ann, offer):
    assert member_api_client(ann).get(FEED, {"offer": offer.pk}).status_code == 403


# --- the loyalty engine's feed ----------------------------------------------------------------

@pytest.fixture
def staff_api(marketer):
    client = APIClient()
    client.force_authenticate(marketer)
    return client


def test_the_feed_lists_each_members_skus_and_when_they_picked(staff_api, ann, bob, offer,
                                                               products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[2].pk, products[0].pk])
    favorite_picks_replace(member=bob, offer=offer, product_ids=[products[1].pk])

    body = staff_api.get(FEED, {"offer": offer.pk}).json()

    rows = {row["member_external_id"]: row for row in body["results"]}
    assert rows["ANN"]["product_skus"] == ["P0", "P2"]
    assert rows["BOB"]["product_skus"] == ["P1"]
    assert all(pick["picked_at"] for pick in rows["ANN"]["picks"])
    assert rows["ANN"]["offer"] == offer.pk


def test_the_feed_needs_the_offer(staff_api):
    reply = staff_api.get(FEED)

    assert reply.status_code == 400 and "offer" in reply.json()


def test_the_feed_holds_only_the_asked_offers_picks(staff_api, ann, offer, products):
    other = FavoriteProductsOfferFactory(products=products)
    favorite_picks_replace(member=ann, offer=other, product_ids=[products[0].pk])

    assert staff_api.get(FEED, {"offer": offer.pk}).json()["results"] == []


def test_the_feed_filters_by_member_external_id(staff_api, ann, bob, offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])
    favorite_picks_replace(member=bob, offer=offer, product_ids=[products[1].pk])

    rows = staff_api.get(FEED, {"offer": offer.pk, "member_external_id": "BOB"}).json()

    assert [row["member_external_id"] for row in rows["results"]] == ["BOB"]


def test_the_feed_gives_picks_changed_since_a_time(staff_api, ann, bob, offer, products):
    now = timezone.now()
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk],
                           now=now - timedelta(hours=2))
    favorite_picks_replace(member=bob, offer=offer, product_ids=[products[1].pk], now=now)

    rows = staff_api.get(FEED, {"offer": offer.pk,
                                "updated_since": (now - timedelta(hours=1)).isoformat()}).json()

    assert [row["member_external_id"] for row in rows["results"]] == ["BOB"]


def test_a_member_who_dropped_every_pick_is_in_the_feed_with_none(staff_api, ann, offer,
                                                                  products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])
    favorite_picks_replace(member=ann, offer=offer, product_ids=[])

    [row] = staff_api.get(FEED, {"offer": offer.pk}).json()["results"]

    assert row["product_skus"] == [] and row["member_external_id"] == "ANN"


def test_the_feed_pages_with_a_cursor_oldest_change_first(staff_api, offer, products):
    start = timezone.now() - timedelta(hours=1)
    members = [MemberFactory(external_id=f"M-{n}") for n in range(5)]
    for n, member in enumerate(members):
        favorite_picks_replace(member=member, offer=offer, product_ids=[products[0].pk],
                               now=start + timedelta(minutes=n))

    seen, url, params = [], FEED, {"offer": offer.pk, "page_size": 2}
    while url:
        page = staff_api.get(url, params).json()
        seen += [row["member_external_id"] for row in page["results"]]
        url, params = page["next"], None

    assert seen == ["M-0", "M-1", "M-2", "M-3", "M-4"]


def test_the_feed_makes_a_fixed_number_of_queries_per_page(staff_api, offer, products,
                                                           django_assert_max_num_queries):
    for member in MemberFactory.create_batch(20):
        favorite_picks_replace(member=member, offer=offer,
                               product_ids=[p.pk for p in products[:3]])

    with django_assert_max_num_queries(3):
        reply = staff_api.get(FEED, {"offer": offer.pk})

    assert len(reply.json()["results"]) == 20
