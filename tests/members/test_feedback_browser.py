"""Feedback in a real browser: a member writes to support with an attachment from the account
pages; an agent answers in the admin."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from members.models import FeedbackThread
from tests.conftest import account_sign_in, screenshot
from tests.members.factories import MemberFactory
from tests.members.feedback_samples import (
    png_bytes,
    thread_of,
    upload,
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("feedback_storage")]


def test_a_member_writes_to_support_with_a_photo_and_sees_it_listed(browser_page: Page,
                                                                    live_server):
    member = MemberFactory(email="ann@example.com", first_name="Ann")
    account_sign_in(browser_page, live_server.url, member)

    browser_page.get_by_role("link", name="Support").click()
    browser_page.get_by_label("Topic").select_option(label="Order")
    browser_page.get_by_label("Your message").fill("The parcel arrived damaged, photo attached.")
    browser_page.get_by_label("Attachment (optional)").set_input_files(
        {"name": "parcel.png", "mimeType": "image/png", "buffer": png_bytes()})
    browser_page.get_by_role("button", name="Send", exact=True).click()

    expect(browser_page.get_by_role("status")).to_contain_text("Your message was sent")
    expect(browser_page.get_by_role("link", name="parcel.png")).to_be_visible()
    screenshot(browser_page, "feedback-thread")
    browser_page.get_by_role("link", name="All conversations").click()
    listed = browser_page.locator(".feedback-threads li")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("The parcel arrived damaged")
    expect(listed).to_contain_text("New")
    screenshot(browser_page, "feedback-list")
    assert FeedbackThread.objects.get(member=member).messages.get().attachment_type == (
        "image/png")


def test_a_support_agent_answers_a_thread_in_the_admin(browser_page: Page, live_server,
                                                       support_agent):
    member = MemberFactory(email="ann@example.com")
    thread = thread_of(member, text="My points are missing.",
                       attachment=upload("receipt.png", png_bytes()))
    browser_page.goto(f"{live_server.url}/admin/login/")
    browser_page.get_by_label("Username").fill("agent")
    browser_page.get_by_label("Password").fill("a-long-password")
    browser_page.get_by_role("button", name="Log in").click()

    browser_page.goto(f"{live_server.url}/admin/members/feedbackthread/?status__exact=new")
    browser_page.get_by_role("link", name=str(thread)).click()
    browser_page.get_by_label("Answer").fill("They are back on your account.")
    browser_page.get_by_role("button", name="Send answer").click()

    expect(browser_page.get_by_text("The answer is sent and the member is notified.")
           ).to_be_visible()
    expect(browser_page.locator(".feedback-message")).to_have_count(2)
    screenshot(browser_page, "feedback-admin-thread")
    thread.refresh_from_db()
    assert thread.status == "answered"
