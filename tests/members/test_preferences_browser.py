"""The preferences page in a real browser: a member stops SMS offers and sets quiet hours, and
sees the change in their recent choices, as the consent ledger recorded it."""

from __future__ import annotations

from datetime import time

import pytest
from playwright.sync_api import Page, expect

from members.models import ConsentEvent
from tests.conftest import account_sign_in, screenshot
from tests.members.preferences_samples import member_allowing_email_and_sms

pytestmark = pytest.mark.browser


def test_a_member_stops_sms_offers_and_the_ledger_shows_it(browser_page: Page, live_server):
    member = member_allowing_email_and_sms()
    account_sign_in(browser_page, live_server.url, member)

    browser_page.get_by_role("link", name="Preferences").click()
    sms = browser_page.get_by_label("Text messages (SMS)")
    expect(sms).to_be_checked()
    sms.uncheck()
    browser_page.get_by_label("Keep quiet hours").check()
    browser_page.get_by_label("From").fill("22:00")
    browser_page.get_by_label("Until").fill("07:30")
    browser_page.get_by_role("button", name="Save preferences").click()

    expect(browser_page.get_by_role("status")).to_contain_text("Your preferences are saved.")
    expect(browser_page.get_by_label("Text messages (SMS)")).not_to_be_checked()
    expect(browser_page.get_by_label("Email", exact=True)).to_be_checked()
    history = browser_page.locator(".preferences-history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("Text messages (SMS)")
    expect(history.first).to_contain_text("Refused on this website")
    screenshot(browser_page, "preferences-saved")
    event = ConsentEvent.objects.get(member=member)
    assert (event.channel, event.action, event.source) == ("sms", "withdraw", "account_page")
    member.refresh_from_db()
    assert (member.quiet_hours_start, member.quiet_hours_end) == (time(22), time(7, 30))
