"""Offers through the API: the member's own (/api/v1/me/offers/, the home call) and the staff's
(/api/v1/offers/), with who may reach what."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api_me import offers_home
from campaigns.models import PromoContent, PromoContentDay
from campaigns.services import promo_content_count
from tests.campaigns.factories import PromoContentFactory, TargetGroupFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann", city="Berlin")


@pytest.fixture
def bob():
    return MemberFactory(first_name="Bob", city="Riga")


@pytest.fixture
def berlin_offer():
    group = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Berlin"})
    return PromoContentFactory(title="Berlin only", target_group=group)


# --- the member's offers -----------------------------------------------------------------------

def test_the_list_gives_the_apps_offers_by_default(member_api_client, ann):
    PromoContentFactory(title="In the app", placement="app", priority=2)
    PromoContentFactory(title="Everywhere", placement="both")
    PromoContentFactory(title="On the web", placement="account")

    reply = member_api_client(ann).get("/api/v1/me/offers/")

    assert reply.status_code == 200
    assert [offer["title"] for offer in reply.json()] == ["In the app", "Everywhere"]


def test_the_list_gives_the_account_pages_offers_when_asked(member_api_client, ann):
    PromoContentFactory(title="In the app", placement="app")
    PromoContentFactory(title="On the web", placement="account")

    reply = member_api_client(ann).get("/api/v1/me/offers/?placement=account")

    assert [offer["title"] for offer in reply.json()] == ["On the web"]


def test_an_unknown_placement_is_refused_by_name(member_api_client, ann):
    reply = member_api_client(ann).get("/api/v1/me/offers/?placement=email")

    assert reply.status_code == 400 and "placement" in reply.json()


def test_an_offer_shown_to_the_member_opens_with_its_call_to_action(member_api_client, ann):
    offer = PromoContentFactory(title="Sale", link_url="myapp://offers/7", link_label="Open")

    reply = member_api_client(ann).get(f"/api/v1/me/offers/{offer.pk}/")

    assert reply.status_code == 200
    assert reply.json() | {"starts_at": None, "ends_at": None} == {
        "id": offer.pk, "title": "Sale", "text": offer.text, "image_url": "",
        "link_url": "myapp://offers/7", "link_label": "Open", "starts_at": None,
        "ends_at": None}


def test_an_offer_of_another_audience_is_not_found(member_api_client, bob, berlin_offer):
    reply = member_api_client(bob).get(f"/api/v1/me/offers/{berlin_offer.pk}/")

    assert reply.status_code == 404 and reply.json()["code"] == "not_found"


def test_an_ended_offer_is_not_found(member_api_client, ann):
    offer = PromoContentFactory(starts_at=NOW - dt.timedelta(days=3),
                                ends_at=NOW - dt.timedelta(days=1))

    assert member_api_client(ann).get(f"/api/v1/me/offers/{offer.pk}/").status_code == 404


def test_a_view_is_counted_for_an_offer_shown_to_the_member(member_api_client, ann):
    offer = PromoContentFactory()

    reply = member_api_client(ann).post(f"/api/v1/me/offers/{offer.pk}/view/")

    assert reply.status_code == 204
    day = PromoContentDay.objects.get(offer=offer)
    assert (day.views, day.clicks) == (1, 0)


def test_a_click_is_counted_for_an_offer_shown_to_the_member(member_api_client, ann):
    offer = PromoContentFactory()

    reply = member_api_client(ann).post(f"/api/v1/me/offers/{offer.pk}/click/")

    assert reply.status_code == 204
    assert PromoContentDay.objects.get(offer=offer).clicks == 1


@pytest.mark.parametrize("counter", ["view", "click"])
def test_an_offer_not_shown_to_the_member_is_not_counted(member_api_client, bob, berlin_offer,
                                                         counter):
    reply = member_api_client(bob).post(f"/api/v1/me/offers/{berlin_offer.pk}/{counter}/")

    assert reply.status_code == 404
    assert not PromoContentDay.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/me/offers/", "/api/v1/me/offers/{id}/"])
def test_a_stranger_gets_401(path):
    offer = PromoContentFactory()

    reply = APIClient().get(path.format(id=offer.pk))

    assert reply.status_code == 401


def test_a_stranger_cannot_count_a_view():
    offer = PromoContentFactory()

    assert APIClient().post(f"/api/v1/me/offers/{offer.pk}/view/").status_code == 401
    assert not PromoContentDay.objects.exists()


def test_a_staff_session_is_not_a_member_for_the_offers(marketer_client):
    PromoContentFactory()

    assert marketer_client.get("/api/v1/me/offers/").status_code == 401


# --- the home call -----------------------------------------------------------------------------

def test_the_home_call_carries_the_apps_offers_for_the_member(member_api_client, bob,
                                                             berlin_offer):
    PromoContentFactory(title="In the app", placement="app")
    PromoContentFactory(title="On the web", placement="account")

    home = member_api_client(bob).get("/api/v1/me/home/").json()

    assert [offer["title"] for offer in home["offers"]] == ["In the app"]


def _home_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me/home/").status_code == 200
    return len(queries)


def test_the_home_call_makes_as_many_queries_for_five_audiences_as_for_one(member_api_client,
                                                                          ann):
    client = member_api_client(ann)
    _home_queries(client)  # the token's first use is recorded once
    PromoContentFactory(target_group=TargetGroupFactory(rules={"field": "city", "op": "eq",
                                                               "value": "Berlin"}))
    one_audience = _home_queries(client)
    for city in ("Riga", "Oslo", "Lyon", "Porto"):
        PromoContentFactory.create_batch(2, target_group=TargetGroupFactory(
            rules={"field": "city", "op": "eq", "value": city}))

    assert _home_queries(client) == one_audience


def test_the_home_calls_offers_take_at_most_two_queries(ann, django_assert_max_num_queries):
    for city in ("Berlin", "Riga", "Oslo"):
        PromoContentFactory(target_group=TargetGroupFactory(
            rules={"field": "city", "op": "eq", "value": city}))
    PromoContentFactory.create_batch(3)

    with django_assert_max_num_queries(2):
        offers = offers_home(ann, "app")["offers"]

    assert len(offers) == 4


def test_the_account_home_page_gets_no_app_offers_from_the_home_hook(ann,
                                                                     django_assert_num_queries):
    PromoContentFactory(placement=PromoContent.Placement.APP)

    with django_assert_num_queries(0):  # its own placement's come from the page's tag
        assert offers_home(ann, "account") == {}


# --- the staff API -----------------------------------------------------------------------------

def _offer_body(**fields) -> dict:
    return {"title": "Spring sale", "text": "20% off", "image_url": "https://cdn.example.com/s.png",
            "link_url": "https://shop.example.com/spring", "link_label": "Shop now",
            "placement": "both", "starts_at": (NOW + dt.timedelta(days=2)).isoformat(),
            "ends_at": (NOW + dt.timedelta(days=9)).isoformat(), "show_days_before": 3,
            **fields}


def test_staff_create_an_offer_with_its_display_window(marketer_client):
    reply = marketer_client.post("/api/v1/offers/", _offer_body(), content_type="application/json")

    assert reply.status_code == 201, reply.json()
    offer = PromoContent.objects.get()
    assert offer.shown_from == offer.starts_at - dt.timedelta(days=3)
    assert reply.json()["status"] == "showing"


def test_staff_get_the_offers_errors_by_field(marketer_client):
    body = _offer_body(image_url="http://cdn.example.com/s.png", link_url="",
                       ends_at=(NOW - dt.timedelta(days=1)).isoformat())

    reply = marketer_client.post("/api/v1/offers/", body, content_type="application/json")

    assert reply.status_code == 400
    assert set(reply.json()) == {"image_url", "link_label", "ends_at"}
    assert not PromoContent.objects.exists()


def test_staff_change_an_offer_through_the_same_rules(marketer_client):
    offer = PromoContentFactory(starts_at=NOW, ends_at=NOW + dt.timedelta(days=5))

    reply = marketer_client.patch(f"/api/v1/offers/{offer.pk}/", {"show_days_before": 2},
                                  content_type="application/json")

    assert reply.status_code == 200
    offer.refresh_from_db()
    assert offer.shown_from == offer.starts_at - dt.timedelta(days=2)


def test_staff_list_offers_by_status_with_their_counts(marketer_client):
    showing = PromoContentFactory(title="Now")
    PromoContentFactory(title="Later", starts_at=NOW + dt.timedelta(days=5),
                        ends_at=NOW + dt.timedelta(days=6))
    promo_content_count(offer_ids=[showing.pk], counter="views")
    promo_content_count(offer_ids=[showing.pk], counter="views")
    promo_content_count(offer_ids=[showing.pk], counter="clicks")

    reply = marketer_client.get("/api/v1/offers/?status=showing")

    assert [(row["title"], row["views"], row["clicks"], row["click_rate"])
            for row in reply.json()["results"]] == [("Now", 2, 1, 0.5)]


def test_a_member_token_opens_no_staff_offer_endpoint(member_api_client, ann):
    offer = PromoContentFactory()
    client = member_api_client(ann)

    assert client.get("/api/v1/offers/").status_code == 403
    assert client.delete(f"/api/v1/offers/{offer.pk}/").status_code == 403
    assert PromoContent.objects.filter(pk=offer.pk).exists()
