"""The trigger mailing screen in a real browser: Debian's Chromium against the live server."""
from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from communications.models import Mailing, Trigger
from tests.communications.factories import GatewayFactory, TemplateFactory

# The fixture logging the browser in to the admin through its login form, as a superuser.
from tests.communications.test_gateway_admin_browser import admin_page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("admin_page")]


def test_a_marketer_fixes_a_bad_condition_and_activates_the_trigger_mailing(
    browser_page, live_server,
):
    page = browser_page
    template = TemplateFactory(name="Thanks")
    gateway = GatewayFactory(name="Relay")
    page.goto(live_server.url + reverse("admin:communications_triggermailing_add"))
    page.get_by_label("Name:", exact=True).fill("Thanks for a large order")
    page.get_by_label("Template:", exact=True).select_option(label=str(template))
    page.get_by_label("Gateway:", exact=True).select_option(label=str(gateway))
    page.locator("#id_trigger-0-event_type").fill("ORDER_PLACED")
    page.locator("#id_trigger-0-conditions").fill('[{"path": "total", "op": "above", "value": 50}]')
    page.get_by_role("button", name="Save and activate").click()

    expect(page.locator(".errorlist").first).to_contain_text("conditions[0].op: one of eq")
    assert not Mailing.objects.exists()

    page.locator("#id_trigger-0-conditions").fill('[{"path": "total", "op": "gte", "value": 50}]')
    page.get_by_role("button", name="Save and activate").click()

    expect(page.locator(".messagelist")).to_contain_text("is active")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    mailing = Mailing.objects.get()
    assert (mailing.kind, mailing.state) == ("trigger", "sending")
    assert Trigger.objects.get(mailing=mailing).conditions == [
        {"path": "total", "op": "gte", "value": 50}]
