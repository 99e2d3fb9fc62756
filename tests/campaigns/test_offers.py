"""Offers (promo content): who sees which, when and where, how they are validated and counted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.utils import timezone

from campaigns.models import PromoContent, PromoContentDay
from campaigns.selectors import OFFERS_SHOWN_MAX, offers_shown
from campaigns.services import promo_content_count, promo_content_save
from tests.campaigns.factories import (
    PromoContentFactory,
    StaticListFactory,
    StaticListMemberFactory,
    TargetGroupFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _titles(member, placement=None, now=None) -> list[str]:
    return [offer.title for offer in offers_shown(member=member, placement=placement, now=now)]


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann", city="Berlin")


@pytest.fixture
def berliners():
    return TargetGroupFactory(name="Berliners", rules={"field": "city", "op": "eq",
                                                       "value": "Berlin"})


# --- display window, activity ------------------------------------------------------------------

def test_an_offer_is_shown_from_its_days_before_the_start(ann):
    PromoContentFactory(title="Summer sale", starts_at=NOW + dt.timedelta(days=3),
                        ends_at=NOW + dt.timedelta(days=10), show_days_before=5)

    assert _titles(ann) == ["Summer sale"]


def test_an_offer_is_not_shown_before_its_display_window(ann):
    PromoContentFactory(title="Summer sale", starts_at=NOW + dt.timedelta(days=3),
                        ends_at=NOW + dt.timedelta(days=10), show_days_before=2)

    assert _titles(ann) == []
    assert _titles(ann, now=NOW + dt.timedelta(days=1, minutes=1)) == ["Summer sale"]


def test_an_offer_is_hidden_once_it_ends(ann):
    offer = PromoContentFactory(title="Weekend deal")

    assert _titles(ann, now=offer.ends_at - dt.timedelta(seconds=1)) == ["Weekend deal"]
    assert _titles(ann, now=offer.ends_at) == []


def test_a_switched_off_offer_is_hidden(ann):
    PromoContentFactory(title="Withdrawn", is_active=False)

    assert _titles(ann) == []


def test_the_display_window_starts_the_given_days_before_the_start():
    offer = PromoContentFactory(starts_at=NOW, ends_at=NOW + dt.timedelta(days=9),
                                show_days_before=4)

    assert offer.shown_from == NOW - dt.timedelta(days=4)


# --- audience ----------------------------------------------------------------------------------

def test_an_offer_without_an_audience_is_shown_to_every_member(ann):
    PromoContentFactory(title="For all")

    assert _titles(ann) == ["For all"]
    assert _titles(MemberFactory(city="Riga")) == ["For all"]


def test_an_offer_for_a_target_group_is_shown_to_its_members(ann, berliners):
    PromoContentFactory(title="Berlin only", target_group=berliners)

    assert _titles(ann) == ["Berlin only"]


def test_an_offer_for_a_target_group_is_hidden_from_other_members(berliners):
    PromoContentFactory(title="Berlin only", target_group=berliners)

    assert _titles(MemberFactory(city="Riga")) == []


def test_the_audience_follows_the_members_data_as_it_is_now(ann, berliners):
    PromoContentFactory(title="Berlin only", target_group=berliners)
    ann.city = "Riga"
    ann.save(update_fields=["city"])

    assert _titles(ann) == []


def test_an_audience_of_a_static_list_shows_to_its_entries_only(ann):
    listed = StaticListFactory()
    StaticListMemberFactory(static_list=listed, member=ann)
    group = TargetGroupFactory(rules={"field": "static_list", "op": "member_of",
                                      "value": listed.pk})
    PromoContentFactory(title="Listed", target_group=group)

    assert _titles(ann) == ["Listed"]
    assert _titles(MemberFactory()) == []


def test_an_audience_whose_rules_broke_after_saving_shows_its_offer_to_nobody(ann):
    listed = StaticListFactory()
    StaticListMemberFactory(static_list=listed, member=ann)
    group = TargetGroupFactory(rules={"field": "static_list", "op": "member_of",
                                      "value": listed.pk})
    PromoContentFactory(title="Listed", target_group=group)
    PromoContentFactory(title="For all")

    listed.delete()

    assert _titles(ann) == ["For all"]


def test_many_audiences_are_answered_in_one_query(ann, django_assert_num_queries):
    for city in ("Berlin", "Riga", "Oslo", "Lyon", "Porto"):
        group = TargetGroupFactory(rules={"or": [
            {"field": "city", "op": "eq", "value": city},
            {"field": "orders_count", "op": "range", "value": [3, None], "days": 90}]})
        PromoContentFactory(title=f"{city} offer", target_group=group)
    PromoContentFactory(title="For all")

    with django_assert_num_queries(2):  # the candidates, then every audience at once
        titles = _titles(ann)

    assert sorted(titles) == ["Berlin offer", "For all"]


def test_offers_without_an_audience_take_one_query(ann, django_assert_num_queries):
    PromoContentFactory.create_batch(3)

    with django_assert_num_queries(1):
        assert len(_titles(ann)) == 3


def test_a_target_group_used_by_an_offer_cannot_be_deleted(berliners):
    PromoContentFactory(target_group=berliners)

    with pytest.raises(ProtectedError):
        berliners.delete()


# --- placement, order, bound -------------------------------------------------------------------

def test_an_app_offer_is_not_shown_in_the_account_pages(ann):
    PromoContentFactory(title="In the app", placement="app")

    assert _titles(ann, placement="app") == ["In the app"]
    assert _titles(ann, placement="account") == []


def test_an_account_offer_is_not_shown_in_the_app(ann):
    PromoContentFactory(title="On the web", placement="account")

    assert _titles(ann, placement="account") == ["On the web"]
    assert _titles(ann, placement="app") == []


def test_an_offer_for_both_placements_is_shown_in_each(ann):
    PromoContentFactory(title="Everywhere", placement="both")

    assert _titles(ann, placement="account") == ["Everywhere"]
    assert _titles(ann, placement="app") == ["Everywhere"]


def test_offers_come_highest_priority_first_then_earliest_start(ann):
    PromoContentFactory(title="Low", priority=1)
    PromoContentFactory(title="High", priority=10)
    PromoContentFactory(title="Low, older", priority=1, starts_at=NOW - dt.timedelta(days=5))

    assert _titles(ann) == ["High", "Low, older", "Low"]


def test_a_member_sees_at_most_the_bounded_number_of_offers(ann):
    PromoContentFactory.create_batch(OFFERS_SHOWN_MAX + 3)

    assert len(_titles(ann)) == OFFERS_SHOWN_MAX


# --- validation --------------------------------------------------------------------------------

def _errors(**fields) -> dict[str, list[str]]:
    offer = PromoContent(title="Offer", starts_at=NOW, ends_at=NOW + dt.timedelta(days=1),
                         **fields)
    with pytest.raises(ValidationError) as raised:
        promo_content_save(offer=offer)
    return raised.value.message_dict


def test_an_image_must_be_an_https_url():
    assert _errors(image_url="http://cdn.example.com/a.png") == {
        "image_url": ["must be an https:// URL (apps refuse plain http images)"]}


@pytest.mark.parametrize("link", ["https://shop.example.com/sale?utm=app", "myapp://offers/7"])
def test_a_link_may_be_a_web_address_or_an_app_deep_link(link):
    offer = promo_content_save(offer=PromoContent(
        title="Offer", link_url=link, starts_at=NOW, ends_at=NOW + dt.timedelta(days=1)))

    assert offer.link_url == link


@pytest.mark.parametrize("link", ["javascript://alert(1)", "shop.example.com/sale",
                                  "https://not a host/"])
def test_a_link_that_opens_nothing_safe_is_refused(link):
    assert set(_errors(link_url=link)) == {"link_url"}


def test_a_call_to_action_label_needs_its_link():
    assert _errors(link_label="Get it") == {
        "link_label": ["a call to action needs the link it opens (link_url)"]}


def test_an_offer_must_end_after_it_starts():
    offer = PromoContent(title="Offer", starts_at=NOW, ends_at=NOW)

    with pytest.raises(ValidationError) as raised:
        promo_content_save(offer=offer)

    assert raised.value.message_dict == {"ends_at": ["must be after the start"]}


def test_an_offer_is_not_announced_more_than_a_year_ahead():
    assert set(_errors(show_days_before=366)) == {"show_days_before"}


# --- counters ----------------------------------------------------------------------------------

def test_views_of_a_day_are_counted_in_one_row_per_offer():
    offer = PromoContentFactory()
    day = dt.date(2025, 3, 1)

    for _ in range(3):
        promo_content_count(offer_ids=[offer.pk], counter="views", on=day)

    assert list(PromoContentDay.objects.values_list("offer_id", "day", "views", "clicks")) == [
        (offer.pk, day, 3, 0)]


def test_clicks_add_to_the_days_row_beside_its_views():
    offer = PromoContentFactory()
    day = dt.date(2025, 3, 1)

    promo_content_count(offer_ids=[offer.pk], counter="views", on=day)
    promo_content_count(offer_ids=[offer.pk], counter="clicks", on=day)

    row = PromoContentDay.objects.get()
    assert (row.views, row.clicks) == (1, 1)


def test_the_next_day_is_counted_in_a_row_of_its_own():
    offer = PromoContentFactory()

    promo_content_count(offer_ids=[offer.pk], counter="views", on=dt.date(2025, 3, 1))
    promo_content_count(offer_ids=[offer.pk], counter="views", on=dt.date(2025, 3, 2))

    assert PromoContentDay.objects.filter(offer=offer).count() == 2


def test_several_offers_are_counted_in_one_statement(django_assert_num_queries):
    first, second = PromoContentFactory.create_batch(2)

    with django_assert_num_queries(1):
        promo_content_count(offer_ids=[second.pk, first.pk, second.pk], counter="views")

    assert sorted(PromoContentDay.objects.values_list("views", flat=True)) == [1, 1]


def test_an_audience_edited_a_moment_ago_applies_at_once(ann, berliners):
    PromoContentFactory(title="Berlin only", target_group=berliners)
    assert _titles(ann) == ["Berlin only"]

    berliners.rules = {"field": "city", "op": "eq", "value": "Riga"}
    berliners.save()

    assert _titles(ann) == []
