"""The favorite-products page in a real browser: a member picks two products and saves."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from loyalty.models import FavoriteProductPick
from tests.conftest import account_sign_in, screenshot
from tests.loyalty.factories import FavoriteProductsOfferFactory, ProductFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.browser


def test_a_member_picks_two_products_and_sees_them_saved(browser_page: Page, live_server):
    member = MemberFactory(email="ann@example.com", first_name="Ann")
    names = ["Arabica beans", "Oat milk", "Dark chocolate", "Green tea"]
    FavoriteProductsOfferFactory(
        name="Your favorites this spring", pick_limit=3, benefit_value=Decimal("15"),
        products=[ProductFactory(name=name, category="grocery") for name in names])
    account_sign_in(browser_page, live_server.url, member)

    browser_page.get_by_role("link", name="Favorite products").click()
    browser_page.get_by_label("Arabica beans").check()
    browser_page.get_by_label("Dark chocolate").check()
    expect(browser_page.locator(".favorites-count")).to_contain_text("Picked: 2 of 3")
    screenshot(browser_page, "favorites-picking")
    browser_page.get_by_role("button", name="Save my picks").click()

    expect(browser_page.get_by_role("status")).to_have_text("Your picks are saved.")
    expect(browser_page.get_by_label("Arabica beans")).to_be_checked()
    expect(browser_page.get_by_label("Dark chocolate")).to_be_checked()
    expect(browser_page.get_by_label("Oat milk")).not_to_be_checked()
    screenshot(browser_page, "favorites-saved")
    assert set(FavoriteProductPick.objects.filter(selection__member=member)
               .values_list("product__name", flat=True)) == {"Arabica beans", "Dark chocolate"}
