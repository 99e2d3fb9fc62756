"""The member's preference page from an email's unsubscribe link, in a real browser."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from members.models import Consent
from members.unsubscribe import unsubscribe_token
from tests.members.factories import ConsentFactory, consenting_member

pytestmark = pytest.mark.browser


def _state(member, channel: str) -> str | None:
    return (Consent.objects.filter(member=member, channel=channel, purpose="marketing",
                                   category=None).values_list("state", flat=True).first())


def _open(page: Page, live_server, member) -> None:
    token = unsubscribe_token(member_id=member.pk, channel="email", mailing_id=None)
    page.goto(live_server.url + reverse("members-public:unsubscribe", args=[token]))


def test_a_member_unchecks_sms_on_the_page_and_only_sms_is_withdrawn(browser_page: Page,
                                                                      live_server):
    member = consenting_member(first_name="Ingrid", phone="+4915112345678")
    ConsentFactory(member=member, channel="sms")

    _open(browser_page, live_server, member)
    expect(browser_page.get_by_text("Hello Ingrid")).to_be_visible()
    browser_page.get_by_label("SMS").uncheck()
    browser_page.get_by_role("button", name="Save my choices").click()

    expect(browser_page.get_by_role("heading", name="Your preferences are saved")).to_be_visible()
    assert (_state(member, "email"), _state(member, "sms")) == ("granted", "withdrawn")


def test_unsubscribe_from_all_withdraws_every_channel(browser_page: Page, live_server):
    member = consenting_member(phone="+4915112345678")
    ConsentFactory(member=member, channel="sms")

    _open(browser_page, live_server, member)
    browser_page.get_by_role("button", name="Unsubscribe from all").click()

    expect(browser_page.get_by_text("You will not receive any marketing messages")).to_be_visible()
    assert (_state(member, "email"), _state(member, "sms")) == ("withdrawn", "withdrawn")
