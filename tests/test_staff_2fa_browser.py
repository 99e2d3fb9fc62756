"""The staff second factor in a real browser: a staff user with no authenticator signs in,
sets one up from the key the page shows, and later signs in with its code."""

from __future__ import annotations

import base64
import time

import pytest
from django.urls import reverse
from django_otp.oath import TOTP
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "a-long-test-password"


def _code(secret: str, *, ahead: int = 0) -> str:
    """The authenticator app's code for the key, `ahead` 30-second steps from now (django-otp
    refuses a step already used, and takes the next one as clock drift)."""
    totp = TOTP(base64.b32decode(secret))
    totp.time = time.time() + 30 * ahead
    return f"{totp.token():06d}"


def _log_in(page: Page, url: str, code: str | None = None) -> None:
    page.goto(url + reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    if code is not None:
        page.get_by_label("Authenticator code").fill(code)
    page.get_by_role("button", name="Log in").click()


def test_a_staff_user_sets_up_an_authenticator_and_signs_in_with_it(
        browser_page: Page, live_server, django_user_model, settings):
    settings.ENGAGE_STAFF_2FA = True
    django_user_model.objects.create_superuser("marketer", "marketer@example.com", PASSWORD)
    page = browser_page

    _log_in(page, live_server.url)
    page.wait_for_url(live_server.url + reverse("admin:staff_2fa_setup"))
    expect(page.locator(".staff-2fa-qr svg")).to_be_visible()
    secret = page.locator("#staff-2fa-secret").inner_text().strip()
    page.get_by_label("Code from your authenticator app").fill(_code(secret))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(live_server.url + reverse("admin:index"))

    page.context.clear_cookies()
    _log_in(page, live_server.url, code=_code(secret, ahead=1))
    page.wait_for_url(live_server.url + reverse("admin:index"))
    expect(page.locator("#site-name")).to_contain_text("Engage")
