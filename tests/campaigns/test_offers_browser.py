"""Offers in a real browser: the member sees an offer's card on the account's home page and
follows its call to action to the shop, counted on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from campaigns.models import PromoContentDay
from tests.campaigns.factories import PromoContentFactory, TargetGroupFactory
from tests.conftest import account_sign_in, screenshot
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.browser

BANNER = """<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="600">
<rect width="1200" height="600" fill="#f2b33d"/>
<text x="600" y="340" font-size="120" text-anchor="middle" font-family="sans-serif">-20%</text>
</svg>"""


def _shop(route: Route) -> None:
    """The shop and its image CDN, outside Engage: answered here, as the internet would."""
    if route.request.url.endswith(".svg"):
        route.fulfill(body=BANNER, content_type="image/svg+xml")
    else:
        route.fulfill(body="<h1>Spring sale at the shop</h1>", content_type="text/html")


def test_a_member_sees_an_offer_on_the_account_home_and_opens_it(browser_page: Page,
                                                                  live_server):
    ann = MemberFactory(email="ann@example.com", first_name="Ann", city="Berlin")
    berliners = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Berlin"})
    offer = PromoContentFactory(
        title="Spring sale: 20% off", text="On every garden product until Sunday.",
        image_url="https://cdn.shop.example.com/spring.svg", placement="account",
        link_url="https://shop.example.com/spring", link_label="Shop the sale",
        target_group=berliners)
    PromoContentFactory(title="Riga only", placement="account", target_group=TargetGroupFactory(
        rules={"field": "city", "op": "eq", "value": "Riga"}))
    browser_page.route("https://*.example.com/**", _shop)

    account_sign_in(browser_page, live_server.url, ann)

    card = browser_page.get_by_role("article").filter(has_text="Spring sale: 20% off")
    expect(card).to_be_visible()
    expect(browser_page.get_by_text("Riga only")).to_have_count(0)
    screenshot(browser_page, "offers-account-home")

    card.get_by_role("link", name="Shop the sale").click()

    browser_page.wait_for_url("https://shop.example.com/spring")
    expect(browser_page.get_by_role("heading", name="Spring sale at the shop")).to_be_visible()
    counted = PromoContentDay.objects.get(offer=offer)
    assert (counted.views, counted.clicks) == (1, 1)
