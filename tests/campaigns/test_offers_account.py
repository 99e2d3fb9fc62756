"""Offers in the member's account pages: the home page's cards, /account/offers/, and the call
to action's redirect that counts the click."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import PromoContentDay
from tests.campaigns.factories import PromoContentFactory, TargetGroupFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann", city="Berlin", language="en")


@pytest.fixture
def riga_offer():
    group = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Riga"})
    return PromoContentFactory(title="Riga only", target_group=group)


def test_the_home_page_shows_the_account_offers_as_cards(account_client, ann):
    PromoContentFactory(title="Spring sale", placement="account")
    PromoContentFactory(title="App only", placement="app")

    page = account_client(ann).get("/account/").content.decode()

    assert "Offers for you" in page
    assert "Spring sale" in page and "App only" not in page


def test_the_offers_page_lists_the_offers_shown_to_the_member(account_client, ann, riga_offer):
    PromoContentFactory(title="Spring sale", placement="both")

    page = account_client(ann).get("/account/offers/")

    assert page.status_code == 200
    assert "Spring sale" in page.content.decode()
    assert "Riga only" not in page.content.decode()


def test_the_offers_page_counts_what_it_shows_as_viewed(account_client, ann, riga_offer):
    shown = PromoContentFactory(placement="account")

    account_client(ann).get("/account/offers/")

    assert list(PromoContentDay.objects.values_list("offer_id", "views")) == [(shown.pk, 1)]


def test_the_offers_page_takes_a_fixed_number_of_queries(account_client, ann,
                                                         django_assert_max_num_queries):
    for city in ("Berlin", "Riga", "Oslo", "Lyon"):
        PromoContentFactory.create_batch(2, placement="account", target_group=TargetGroupFactory(
            rules={"field": "city", "op": "eq", "value": city}))
    client = account_client(ann)

    # session, member, candidates, audiences, the views' upsert (and the savepoint pair
    # the test database wraps it in)
    with django_assert_max_num_queries(7):
        page = client.get("/account/offers/")

    assert page.content.decode().count('class="card offer"') == 2


def test_the_offers_page_is_in_the_navigation(account_client, ann):
    page = account_client(ann).get("/account/").content.decode()

    assert '<a href="/account/offers/">Offers</a>' in page


def test_the_offers_page_sends_a_stranger_to_sign_in(client):
    reply = client.get("/account/offers/")

    assert reply.status_code == 302 and reply["Location"].startswith("/account/sign-in/")


def test_the_offers_page_speaks_the_members_language(account_client):
    ivan = MemberFactory(language="ru")
    PromoContentFactory(link_label="")

    page = account_client(ivan).get("/account/offers/").content.decode()

    assert "Предложения для вас" in page and "Подробнее" in page


def test_the_call_to_action_counts_the_click_and_opens_the_offers_link(account_client, ann):
    offer = PromoContentFactory(link_url="https://shop.example.com/spring?from=account")

    reply = account_client(ann).get(f"/account/offers/{offer.pk}/open/")

    assert reply.status_code == 302
    assert reply["Location"] == "https://shop.example.com/spring?from=account"
    assert PromoContentDay.objects.get(offer=offer).clicks == 1


def test_an_offer_with_a_deep_link_has_no_button_in_the_account(account_client, ann):
    offer = PromoContentFactory(link_url="myapp://offers/7", link_label="Open in the app")
    client = account_client(ann)

    page = client.get("/account/offers/").content.decode()

    assert "Open in the app" not in page
    assert client.get(f"/account/offers/{offer.pk}/open/").status_code == 404
    assert not PromoContentDay.objects.filter(clicks__gt=0).exists()


def test_another_audiences_offer_does_not_open_for_the_member(account_client, ann, riga_offer):
    reply = account_client(ann).get(f"/account/offers/{riga_offer.pk}/open/")

    assert reply.status_code == 404
    assert not PromoContentDay.objects.exists()


def test_an_app_only_offer_does_not_open_in_the_account(account_client, ann):
    offer = PromoContentFactory(placement="app")

    assert account_client(ann).get(f"/account/offers/{offer.pk}/open/").status_code == 404


def test_an_announced_offer_says_when_it_starts(account_client, ann):
    starts = timezone.now() + dt.timedelta(days=3)
    PromoContentFactory(title="Coming soon", starts_at=starts,
                        ends_at=starts + dt.timedelta(days=7), show_days_before=5)

    page = account_client(ann).get("/account/offers/").content.decode()

    assert "Coming soon" in page and "Starts on " in page
