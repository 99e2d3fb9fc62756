"""The gateway's admin in a real browser: Debian's Chromium against the live server."""
from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from communications.models import Message
from tests.communications.factories import GatewayFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-test-password"
RELAY_PASSWORD = "relay-password-never-shown"


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


def test_a_marketer_sends_a_test_from_the_gateway_page_and_never_sees_its_password(
    admin_page, live_server, smtp_peer,
):
    page = admin_page
    gateway = GatewayFactory(name="Main relay",
                             settings={**smtp_peer.gateway_settings(),
                                       "password": RELAY_PASSWORD})
    page.goto(live_server.url + reverse("admin:communications_gateway_change",
                                        args=[gateway.pk]))
    expect(page.locator(".field-secret_password")).to_contain_text("••• set")
    assert RELAY_PASSWORD not in page.content()

    page.get_by_role("link", name="Send a test / check health now").click()
    page.get_by_label("Address").fill("ops@example.com")
    page.get_by_label("Text").fill("Is the relay alive?")
    page.get_by_role("button", name="Send the test").click()

    expect(page.locator(".gateway-test-status")).to_have_text("Sent")
    expect(page.locator(".gateway-test-outcome")).to_contain_text("sent (provider id")
    [received] = smtp_peer.received
    assert received.rcpt_tos == ["ops@example.com"]
    assert Message.objects.get().is_test
