"""The marketer's favorite-products screens: the offer's settings, who picked, what is picked
most."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.favorites.services import favorite_picks_replace
from loyalty.models import FavoriteProductsOffer
from tests.loyalty.factories import FavoriteProductsOfferFactory, ProductFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

ADMIN = "/admin/loyalty/favoriteproductsoffer/"


def offer_form(**changes):
    now = timezone.now()
    form = {"name": "Spring favorites", "starts_at_0": f"{now:%Y-%m-%d}",
            "starts_at_1": "00:00:00", "ends_at_0": f"{now + timedelta(days=30):%Y-%m-%d}",
            "ends_at_1": "00:00:00", "pick_limit": "3", "benefit": "percent_discount",
            "benefit_value": "15", "candidate_source": "history", "history_days": "180",
            "history_categories": "3", "history_products": "12"}
    form.update(changes)
    return form


def test_a_marketer_creates_an_offer_from_purchase_history(marketer_client):
    reply = marketer_client.post(f"{ADMIN}add/", offer_form())

    assert reply.status_code == 302
    offer = FavoriteProductsOffer.objects.get()
    assert (offer.pick_limit, offer.candidate_source, offer.history_categories) == (
        3, "history", 3)


def test_a_percent_discount_over_100_is_refused_on_its_field(marketer_client):
    reply = marketer_client.post(f"{ADMIN}add/", offer_form(benefit_value="120"))

    assert reply.status_code == 200
    assert reply.context["adminform"].form.errors["benefit_value"] == [
        "A percent discount is at most 100."]
    assert not FavoriteProductsOffer.objects.exists()


def test_fractional_extra_points_are_refused(marketer_client):
    reply = marketer_client.post(f"{ADMIN}add/", offer_form(benefit="extra_points",
                                                             benefit_value="2.5"))

    assert "benefit_value" in reply.context["adminform"].form.errors


def test_picks_cannot_lock_after_the_offer_ends(marketer_client):
    later = timezone.now() + timedelta(days=60)
    reply = marketer_client.post(f"{ADMIN}add/", offer_form(
        picks_locked_at_0=f"{later:%Y-%m-%d}", picks_locked_at_1="00:00:00"))

    assert "picks_locked_at" in reply.context["adminform"].form.errors


def test_the_offer_page_counts_members_who_picked_and_the_most_picked(marketer_client):
    coffee, tea, cocoa = (ProductFactory(sku=sku, name=sku.title()) for sku in
                          ("coffee", "tea", "cocoa"))
    offer = FavoriteProductsOfferFactory(products=[coffee, tea, cocoa])
    favorite_picks_replace(member=MemberFactory(), offer=offer, product_ids=[coffee.pk, tea.pk])
    favorite_picks_replace(member=MemberFactory(), offer=offer, product_ids=[coffee.pk])
    favorite_picks_replace(member=MemberFactory(), offer=offer, product_ids=[])

    page = marketer_client.get(f"{ADMIN}{offer.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200
    assert '<div class="readonly">2</div>' in html
    assert html.index("<td>coffee</td><td>Coffee</td><td>2</td>") < html.index(
        "<td>tea</td><td>Tea</td><td>1</td>")
    assert "<td>cocoa</td>" not in html


def test_support_finds_a_members_picks_by_external_id(marketer_client):
    offer = FavoriteProductsOfferFactory(products=[ProductFactory(sku="beans")])
    favorite_picks_replace(member=MemberFactory(external_id="M-42"), offer=offer,
                           product_ids=[offer.products.get().pk])
    favorite_picks_replace(member=MemberFactory(external_id="M-43"), offer=offer, product_ids=[])

    page = marketer_client.get("/admin/loyalty/favoriteproductsselection/", {"q": "M-42"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "M-42" in html and "beans" in html and "M-43" not in html
