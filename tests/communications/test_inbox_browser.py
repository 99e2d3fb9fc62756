"""The inbox in a real browser: a member finds what they received on every channel, filters it
to unread app messages and marks one read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from communications.models import Message
from tests.communications.factories import MailingFactory, TemplateFactory
from tests.communications.test_inbox import received
from tests.conftest import account_sign_in, screenshot
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.browser


def test_a_member_reads_their_messages_and_marks_an_app_message_read(browser_page: Page,
                                                                     live_server):
    member = MemberFactory(email="ann@example.com", first_name="Ann", last_name="Lee")
    received(member, channel="email", ago=timedelta(days=2))
    received(member, channel="sms", ago=timedelta(days=1))
    push = received(member, channel="push", ago=timedelta(hours=1), mailing=MailingFactory(
        template=TemplateFactory(channel="push", subject="Double points, {{ member.first_name }}",
                                 body="This weekend only.")))
    account_sign_in(browser_page, live_server.url, member)
    expect(browser_page.get_by_text("Unread app messages: 1")).to_be_visible()

    browser_page.get_by_role("link", name="Messages").first.click()
    items = browser_page.locator("ol.inbox > li")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("Double points, Ann")
    expect(items.first).to_contain_text("Unread")
    screenshot(browser_page, "inbox-list")
    browser_page.get_by_label("Unread only").check()
    browser_page.get_by_role("button", name="Show").click()
    expect(items).to_have_count(1)
    items.first.get_by_role("button", name="Mark as read").click()

    expect(browser_page.get_by_text("No messages match this filter.")).to_be_visible()
    push.refresh_from_db()
    assert push.status == Message.Status.OPENED
    screenshot(browser_page, "inbox-all-read")
