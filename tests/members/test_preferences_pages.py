"""The member's preferences page (/account/preferences/): consent per channel and category
(recorded with source `account_page`), language, quiet hours and the latest ledger entries."""

from __future__ import annotations

from datetime import time

import pytest

from members.models import ConsentEvent, Member
from tests.members.factories import SubscriptionCategoryFactory
from tests.members.preferences_samples import member_allowing_email_and_sms

pytestmark = pytest.mark.django_db

PAGE = "/account/preferences/"


@pytest.fixture
def ann():
    return member_allowing_email_and_sms()


def _form(**changes) -> dict:
    """The form as the page posts it with everything left as the fixture has it."""
    return {"channel": ["email", "sms"], "language": "en", **changes}


def test_the_page_shows_each_channel_checked_as_the_member_allowed_it(account_client, ann):
    page = account_client(ann).get(PAGE)

    text = page.content.decode()
    assert page.status_code == 200
    assert 'id="channel-email" name="channel" value="email" checked' in text
    assert 'id="channel-sms" name="channel" value="sms" checked' in text
    assert 'id="channel-push"' not in text


def test_unchecking_sms_withdraws_it_with_source_account_page(account_client, ann):
    reply = account_client(ann).post(PAGE, _form(channel=["email"]), REMOTE_ADDR="203.0.113.4")

    event = ConsentEvent.objects.get(member=ann, channel="sms")
    assert reply.status_code == 302 and reply["Location"] == PAGE
    assert (event.action, event.source, event.ip_address) == ("withdraw", "account_page",
                                                              "203.0.113.4")
    assert event.consent_text == "Account preferences: receive marketing by SMS unchecked"


def test_saving_the_page_unchanged_records_nothing(account_client, ann):
    account_client(ann).post(PAGE, _form())

    assert not ConsentEvent.objects.filter(member=ann).exists()


def test_the_recent_choices_show_the_change_after_saving(account_client, ann):
    client = account_client(ann)
    client.post(PAGE, _form(channel=["email"]))

    text = client.get(PAGE).content.decode()

    assert "Your preferences are saved." in text
    assert "Text messages (SMS)" in text and "Refused on this website" in text


def test_unchecking_a_category_leaves_it_on_every_channel(account_client, ann):
    partners = SubscriptionCategoryFactory(code="partners", name="Partner offers")

    account_client(ann).post(PAGE, _form())

    assert ConsentEvent.objects.filter(member=ann, category=partners,
                                       action="withdraw").count() == 5


def test_quiet_hours_are_kept(account_client, ann):
    account_client(ann).post(PAGE, _form(quiet="on", quiet_from="21:30", quiet_until="08:00"))

    ann.refresh_from_db()
    assert (ann.quiet_hours_start, ann.quiet_hours_end) == (time(21, 30), time(8))


def test_unchecking_quiet_hours_removes_them(account_client, ann):
    Member.objects.filter(pk=ann.pk).update(quiet_hours_start=time(22), quiet_hours_end=time(7))

    account_client(ann).post(PAGE, _form(quiet_from="22:00", quiet_until="07:00"))

    ann.refresh_from_db()
    assert ann.quiet_hours_start is None and ann.quiet_hours_end is None


def test_quiet_hours_without_an_end_are_an_error_on_that_field(account_client, ann):
    page = account_client(ann).post(PAGE, _form(quiet="on", quiet_from="22:00"))

    text = page.content.decode()
    assert page.status_code == 400
    assert 'role="alert"' in text
    assert ('name="quiet_until" value="" aria-invalid="true" '
            'aria-describedby="quiet-until-error"') in text
    assert not ConsentEvent.objects.filter(member=ann).exists()


def test_quiet_hours_ending_when_they_start_are_an_error(account_client, ann):
    page = account_client(ann).post(PAGE, _form(quiet="on", quiet_from="22:00",
                                                quiet_until="22:00"))

    assert page.status_code == 400
    assert "The quiet hours must end at another time than they start." in page.content.decode()


def test_choosing_russian_shows_the_page_in_russian(account_client, ann):
    client = account_client(ann)

    client.post(PAGE, _form(language="ru"))

    page = client.get(PAGE)
    assert page.content.decode().count("Настройки") >= 1
    assert '<html lang="ru">' in page.content.decode()


def test_a_channel_the_page_did_not_offer_is_refused(account_client, ann):
    page = account_client(ann).post(PAGE, _form(channel=["email", "sms", "viber"]))

    assert page.status_code == 400
    assert not ConsentEvent.objects.filter(member=ann).exists()


def test_a_stranger_is_sent_to_sign_in(client):
    reply = client.get(PAGE)

    assert reply.status_code == 302 and reply["Location"].startswith("/account/sign-in/")


def test_the_navigation_links_to_the_preferences(account_client, ann):
    assert f'href="{PAGE}"' in account_client(ann).get("/account/").content.decode()
