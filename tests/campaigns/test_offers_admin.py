"""The offers' admin: list with status and counters, saving through the service, the preview as
a member of a chosen target group."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import PromoContent
from campaigns.services import promo_content_count
from tests.campaigns.factories import PromoContentFactory, TargetGroupFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()
LIST = reverse("admin:campaigns_promocontent_changelist")


def _preview_url(offer, frame: bool = False) -> str:
    name = "preview_frame" if frame else "preview"
    return reverse(f"admin:campaigns_promocontent_{name}", args=[offer.pk])


@pytest.fixture
def berliners():
    return TargetGroupFactory(name="Berliners",
                              rules={"field": "city", "op": "eq", "value": "Berlin"})


def test_the_list_shows_each_offers_status_and_counters(marketer_client):
    offer = PromoContentFactory(title="Spring sale")
    for _ in range(4):
        promo_content_count(offer_ids=[offer.pk], counter="views")
    promo_content_count(offer_ids=[offer.pk], counter="clicks")

    page = marketer_client.get(LIST).content.decode()

    assert '<td class="field-status">Showing</td>' in page
    assert '<td class="field-views">4</td>' in page
    assert '<td class="field-clicks">1</td>' in page
    assert '<td class="field-click_rate">25.0%</td>' in page


def test_the_status_filter_keeps_the_scheduled_offers(marketer_client):
    PromoContentFactory(title="Spring sale")
    PromoContentFactory(title="Summer sale", starts_at=NOW + dt.timedelta(days=30),
                        ends_at=NOW + dt.timedelta(days=40))

    page = marketer_client.get(LIST, {"status": "scheduled"}).content.decode()

    assert "Summer sale" in page and "Spring sale" not in page


def _add_form(**fields) -> dict:
    starts = timezone.localtime(NOW + dt.timedelta(days=3))
    ends = starts + dt.timedelta(days=7)
    data = {"title": "Autumn sale", "text": "", "image_url": "", "link_label": "",
            "link_url": "", "placement": "both", "target_group": "", "campaign": "",
            "priority": "0", "is_active": "on",
            "starts_at_0": f"{starts:%Y-%m-%d}", "starts_at_1": f"{starts:%H:%M:%S}",
            "ends_at_0": f"{ends:%Y-%m-%d}", "ends_at_1": f"{ends:%H:%M:%S}",
            "show_days_before": "5"}
    return data | fields


def test_an_offer_saved_in_the_admin_gets_its_display_window(marketer_client):
    reply = marketer_client.post(reverse("admin:campaigns_promocontent_add"), _add_form())

    assert reply.status_code == 302
    offer = PromoContent.objects.get()
    assert offer.shown_from == offer.starts_at - dt.timedelta(days=5)


def test_the_admin_shows_an_offers_errors_on_their_fields(marketer_client):
    reply = marketer_client.post(reverse("admin:campaigns_promocontent_add"),
                                 _add_form(link_label="Go", image_url="http://a.example/b.png"))

    form = reply.context["adminform"].form
    assert form.errors == {
        "image_url": ["must be an https:// URL (apps refuse plain http images)"],
        "link_label": ["a call to action needs the link it opens (link_url)"]}
    assert not PromoContent.objects.exists()


def test_the_preview_shows_the_offer_as_a_member_of_the_chosen_group(marketer_client,
                                                                     berliners):
    ann = MemberFactory(first_name="Ann", city="Berlin")
    offer = PromoContentFactory(title="Berlin deal", target_group=berliners)

    page = marketer_client.get(_preview_url(offer), {"target_group": berliners.pk})
    frame = marketer_client.get(_preview_url(offer, frame=True), {"target_group": berliners.pk})

    assert f"member #{ann.pk}</a> (Ann" in page.content.decode()
    assert "this offer is shown" in page.content.decode()
    assert frame.status_code == 200 and frame["X-Frame-Options"] == "SAMEORIGIN"
    assert f'<h2 id="offer-{offer.pk}-title">Berlin deal</h2>' in frame.content.decode()


def test_the_preview_says_why_a_member_outside_the_audience_does_not_see_it(marketer_client,
                                                                            berliners):
    bob = MemberFactory(city="Riga")
    offer = PromoContentFactory(target_group=berliners)

    page = marketer_client.get(_preview_url(offer), {"member": bob.pk}).content.decode()

    assert "this offer is not shown</strong>, because the member is not in its audience " \
           "“Berliners”." in page


def test_the_preview_shows_a_scheduled_offer_at_a_later_moment(marketer_client):
    MemberFactory()
    offer = PromoContentFactory(title="Later", starts_at=NOW + dt.timedelta(days=10),
                                ends_at=NOW + dt.timedelta(days=20))
    at = timezone.localtime(NOW + dt.timedelta(days=11))

    now_page = marketer_client.get(_preview_url(offer)).content.decode()
    later_page = marketer_client.get(_preview_url(offer),
                                     {"at": f"{at:%Y-%m-%dT%H:%M}"}).content.decode()

    assert "this offer is not shown</strong>, because it is not shown before" in now_page
    assert "this offer is shown</strong>" in later_page


def test_the_preview_frame_speaks_the_members_language(marketer_client):
    ivan = MemberFactory(language="ru")
    offer = PromoContentFactory()

    frame = marketer_client.get(_preview_url(offer, frame=True), {"member": ivan.pk})

    assert '<html lang="ru">' in frame.content.decode()


def test_the_preview_of_a_group_without_members_says_so(marketer_client, berliners):
    offer = PromoContentFactory(target_group=berliners)

    page = marketer_client.get(_preview_url(offer)).content.decode()

    assert "The target group “Berliners” has no members." in page


def test_the_offers_change_page_links_to_its_preview(marketer_client):
    offer = PromoContentFactory()

    page = marketer_client.get(reverse("admin:campaigns_promocontent_change", args=[offer.pk]))

    assert f'href="{_preview_url(offer)}">Preview as a member</a>' in page.content.decode()
