"""The member's account pages in a real browser: sign-in with a code, keyboard and phone size."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import account_sign_in, screenshot
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.browser


def test_a_member_signs_in_with_the_code_they_were_sent(browser_page: Page, live_server):
    member = MemberFactory(email="ann@example.com", first_name="Ann")

    account_sign_in(browser_page, live_server.url, member)

    expect(browser_page.get_by_role("heading", name="Hello, Ann")).to_be_visible()
    screenshot(browser_page, "account-home")


def test_the_sign_in_form_works_from_the_keyboard_alone(browser_page: Page, live_server):
    MemberFactory(email="ann@example.com")
    browser_page.goto(f"{live_server.url}/account/sign-in/")

    browser_page.keyboard.type("ann@example.com")  # the field has the focus on arrival
    browser_page.keyboard.press("Enter")

    expect(browser_page.get_by_role("heading", name="Enter your code")).to_be_visible()
    expect(browser_page.get_by_label("Code", exact=True)).to_be_focused()


def test_a_wrong_address_is_announced_next_to_the_field(browser_page: Page, live_server):
    browser_page.set_viewport_size({"width": 390, "height": 844})
    browser_page.goto(f"{live_server.url}/account/sign-in/")

    browser_page.get_by_label("Email or phone number").fill("not an address")
    browser_page.get_by_role("button", name="Send me a code").click()

    expect(browser_page.get_by_role("alert")).to_contain_text("Enter the email address")
    expect(browser_page.get_by_label("Email or phone number")).to_have_attribute(
        "aria-invalid", "true")
    screenshot(browser_page, "account-sign-in-error-phone")
