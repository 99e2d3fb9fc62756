"""The marketer's home page in a real browser: Debian's Chromium against the live server, in
the light and the dark theme, with the sidebar by task and the CSV download."""
from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from communications.models import Mailing, Message
from config.roles import MARKETER
from tests.communications.factories import MailingFactory
from tests.conftest import screenshot
from tests.members.factories import MemberFactory
from tests.roles_support import staff_user

pytestmark = pytest.mark.browser

State = Mailing.State
Status = Message.Status


@pytest.fixture
def marketer_page(browser_page: Page, live_server) -> Page:
    """The browser, signed in to the admin through its login form as a marketer."""
    user = staff_user(MARKETER)
    page = browser_page
    page.goto(live_server.url + reverse("admin:login"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + reverse("admin:index"))
    return page


def _messages(mailing: Mailing, count: int, **fields) -> None:
    now = timezone.now()
    Message.objects.bulk_create([
        Message(mailing=mailing, member=member, channel="email", address=member.email,
                created_at=now, updated_at=now, **fields)
        for member in MemberFactory.create_batch(count)])


def _week_of_mailings() -> tuple[Mailing, Mailing, Mailing]:
    now = timezone.now()
    live = MailingFactory(name="Spring offers", state=State.SENDING,
                          started_at=now - dt.timedelta(minutes=10))
    _messages(live, 3, status=Status.SENT, sent_at=now)
    _messages(live, 1, status=Status.QUEUED)
    due = MailingFactory(name="Weekend reminder", state=State.SCHEDULED,
                         scheduled_at=now + dt.timedelta(days=2))
    done = MailingFactory(name="Winter sale", state=State.COMPLETED,
                          started_at=now - dt.timedelta(days=2),
                          completed_at=now - dt.timedelta(days=2) + dt.timedelta(hours=1))
    _messages(done, 4, status=Status.DELIVERED, sent_at=now, delivered_at=now,
              cost=Decimal("0.05"))
    return live, due, done


def test_marketer_reads_the_dashboard_and_downloads_last_weeks_results(marketer_page,
                                                                        live_server):
    # given
    page = marketer_page
    live, due, done = _week_of_mailings()

    # when
    page.goto(live_server.url + reverse("admin:index"))

    # then
    sending = page.locator("#dashboard-sending")
    expect(sending.get_by_role("row", name="Spring offers")).to_contain_text("75%")
    expect(page.locator("#dashboard-scheduled")).to_contain_text("Weekend reminder")
    last_week = page.locator("#dashboard-last-week")
    expect(last_week.get_by_role("row", name="Winter sale")).to_contain_text("0.2")
    screenshot(page, "dashboard-light")
    with page.expect_download() as download:
        last_week.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [row[1] for row in rows[1:]] == ["Winter sale", "Total"]

    page.get_by_role("link", name="Spring offers").click()
    expect(page).to_have_url(live_server.url + reverse(
        "admin:communications_mailing_report", args=[live.pk]))


def test_the_theme_follows_the_dark_mode_and_the_sidebar_lists_screens_by_task(
        marketer_page, live_server):
    page = marketer_page
    _week_of_mailings()
    page.goto(live_server.url + reverse("admin:communications_mailing_changelist"))
    sidebar = page.locator("#nav-sidebar")
    expect(sidebar.get_by_role("link", name="Sending")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Audience")).to_be_visible()
    screenshot(page, "sidebar-by-task")

    def header_colour() -> str:
        return page.evaluate(
            "getComputedStyle(document.getElementById('header')).backgroundColor")

    light = header_colour()
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    dark = header_colour()
    page.goto(live_server.url + reverse("admin:index"))
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    screenshot(page, "dashboard-dark")

    assert light == "rgb(30, 53, 87)"  # Engage's --secondary, not Django's
    assert dark == "rgb(23, 39, 63)"
