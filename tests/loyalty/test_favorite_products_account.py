"""The member's favorite-products page (/account/favorites/): candidates as checkboxes, the
limit and the deadline enforced by the server, in the member's language."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.favorites.services import favorite_picks_replace
from loyalty.models import FavoriteProductPick
from tests.loyalty.factories import (
    FavoriteProductsOfferFactory,
    LoyaltyAccountFactory,
    ProductFactory,
    TierFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

PAGE = "/account/favorites/"


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann")


@pytest.fixture
def products():
    return [ProductFactory(sku=f"P{n}", name=f"Product {n}") for n in range(4)]


@pytest.fixture
def offer(products):
    return FavoriteProductsOfferFactory(name="Your three favorites", pick_limit=2,
                                        products=products)


def picked(member) -> set[str]:
    return set(FavoriteProductPick.objects.filter(selection__member=member)
               .values_list("product__sku", flat=True))


def save_url(offer) -> str:
    return f"/account/favorites/{offer.pk}/"


def test_the_page_shows_the_candidates_as_checkboxes_with_picks_checked(account_client, ann,
                                                                         offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[1].pk])

    html = account_client(ann).get(PAGE).content.decode()

    assert "Your three favorites" in html and "10% off every product you pick" in html
    assert html.count('type="checkbox" name="product"') == 4
    assert f'value="{products[1].pk}" id="offer-{offer.pk}-product-{products[1].pk}" checked' \
        in html
    assert 'Picked: <span class="favorites-picked">1</span> of 2' in html


def test_the_navigation_leads_to_favorite_products(account_client, ann):
    html = account_client(ann).get("/account/").content.decode()

    assert f'href="{PAGE}"' in html and "Favorite products" in html


def test_saving_picks_returns_to_the_page_with_a_confirmation(account_client, ann, offer,
                                                              products):
    client = account_client(ann)

    reply = client.post(save_url(offer), {"product": [products[0].pk, products[2].pk]})

    assert reply.status_code == 302 and reply["Location"] == f"{PAGE}#offer-{offer.pk}"
    assert picked(ann) == {"P0", "P2"}
    assert "Your picks are saved." in client.get(PAGE).content.decode()


def test_too_many_picks_are_refused_with_an_error_and_nothing_changes(account_client, ann,
                                                                      offer, products):
    favorite_picks_replace(member=ann, offer=offer, product_ids=[products[0].pk])

    page = account_client(ann).post(save_url(offer), {"product": [p.pk for p in products[:3]]})

    html = page.content.decode()
    assert page.status_code == 400
    assert 'role="alert"' in html and "You picked more products than allowed (2)." in html
    assert 'aria-invalid="true"' in html
    # The boxes the member checked stay checked, so they can uncheck one and save again.
    assert html.count(" checked") == 3
    assert picked(ann) == {"P0"}


def test_a_value_that_is_no_product_id_is_refused(account_client, ann, offer):
    page = account_client(ann).post(save_url(offer), {"product": ["P0"]})

    assert page.status_code == 400
    assert "not offered to you" in page.content.decode()
    assert picked(ann) == set()


def test_after_the_deadline_the_boxes_are_disabled_and_a_save_is_refused(account_client,
                                                                         ann, products):
    locked = FavoriteProductsOfferFactory(products=products,
                                          picks_locked_at=timezone.now() - timedelta(hours=1))
    client = account_client(ann)

    html = client.get(PAGE).content.decode()
    page = client.post(save_url(locked), {"product": [products[0].pk]})

    assert "<fieldset disabled" in html and "Save my picks" not in html
    assert "Your picks are final." in html
    assert page.status_code == 400
    assert "Your picks can no longer be changed." in page.content.decode()
    assert picked(ann) == set()


def test_an_offer_for_another_tier_cannot_be_saved_to(account_client, ann, products):
    LoyaltyAccountFactory(member=ann, tier=TierFactory(code="bronze"))
    gold_only = FavoriteProductsOfferFactory(products=products,
                                             tiers=[TierFactory(code="gold")])

    page = account_client(ann).post(save_url(gold_only), {"product": [products[0].pk]})

    assert page.status_code == 404
    assert picked(ann) == set()


def test_a_stranger_is_sent_to_sign_in(client, offer):
    assert client.get(PAGE)["Location"] == "/account/sign-in/?next=%2Faccount%2Ffavorites%2F"
    assert client.post(save_url(offer), {"product": ["1"]}).status_code == 302
    assert not FavoriteProductPick.objects.exists()


def test_a_member_with_nothing_to_pick_is_told_so(account_client, ann):
    html = account_client(ann).get(PAGE).content.decode()

    assert "There is no favorite-products offer for you right now." in html


def test_the_page_speaks_the_members_language(account_client, products, offer):
    ivan = MemberFactory(language="ru")

    html = account_client(ivan).get(PAGE).content.decode()

    assert "Любимые товары" in html and "Сохранить выбор" in html


def test_the_page_makes_a_fixed_number_of_queries(account_client, ann, products,
                                                  django_assert_max_num_queries):
    client = account_client(ann)
    for _ in range(3):
        offer = FavoriteProductsOfferFactory(products=products, pick_limit=4)
        favorite_picks_replace(member=ann, offer=offer, product_ids=[p.pk for p in products])

    # The session, its member, the offers, all their candidates, all the picks.
    with django_assert_max_num_queries(5):
        page = client.get(PAGE)

    assert page.status_code == 200
