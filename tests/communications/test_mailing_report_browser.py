"""The mailing report in a real browser: Debian's Chromium against the live server."""
from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from communications.models import Mailing, Message
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-test-password"


@pytest.fixture
def admin_page(browser_page: Page, live_server, django_user_model) -> Page:
    """The browser, logged in to the admin through its login form as a superuser."""
    django_user_model.objects.create_superuser("marketer", "marketer@example.com", PASSWORD)
    page = browser_page
    page.goto(live_server.url + reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + reverse("admin:index"))
    return page


def _sent(mailing: Mailing, count: int) -> None:
    now = timezone.now()
    Message.objects.bulk_create([
        Message(mailing=mailing, member=member, channel="email", address=member.email,
                status=Message.Status.SENT, sent_at=now, created_at=now, updated_at=now)
        for member in MemberFactory.create_batch(count)])


def test_report_of_a_sending_mailing_follows_the_sending_and_its_pause_button_pauses(
    admin_page, live_server,
):
    page = admin_page
    mailing = MailingFactory(name="Spring offers", state=Mailing.State.SENDING,
                             started_at=timezone.now())
    _sent(mailing, 2)
    page.goto(live_server.url + reverse("admin:communications_mailing_change",
                                        args=[mailing.pk]))
    report = page.locator("#mailing-report")
    expect(report.get_by_role("heading", name="Audience split: 2 members")).to_be_visible()
    expect(report.get_by_role("img", name="Funnel")).to_be_visible()

    # the sending goes on: the report follows without a reload
    _sent(mailing, 3)
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#mailing-report").get_by_role(
        "heading", name="Audience split: 5 members")).to_be_visible(timeout=20_000)
    assert page.evaluate("window.notReloaded") is True

    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".messagelist")).to_contain_text("is paused")
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.PAUSED
    expect(page.locator("#mailing-report")).to_have_attribute("data-live", "0")
