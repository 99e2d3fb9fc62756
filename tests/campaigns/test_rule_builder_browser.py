"""The target-group rule builder in a real browser: Debian's Chromium against the live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from campaigns.models import TargetGroup
from tests.campaigns.factories import TargetGroupFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.browser

PASSWORD = "a-long-test-password"

BUILT = {"and": [
    {"field": "language", "op": "eq", "value": "de"},
    {"or": [
        {"field": "city", "op": "eq", "value": "Riga"},
        {"field": "orders_count", "op": "range", "value": [2, None], "days": 90},
    ]},
    {"not": {"field": "status", "op": "eq", "value": "blocked"}},
]}


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


def _open(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(".rule-builder[data-ready]")).to_be_attached()


def _node(page: Page, path: str) -> Locator:
    return page.locator(f'.rule-builder [data-path="{path}"]')


def _group_button(page: Page, path: str, name: str) -> Locator:
    return _node(page, path).locator(":scope > .rb-group-actions").get_by_role("button",
                                                                                name=name)


def _audience_members() -> None:
    """Six members, of whom two match BUILT: one in Riga, one who ordered twice lately."""
    long_ago = timezone.now() - timedelta(days=120)
    consenting_member(channel="sms", language="de", city="Riga")
    repeat = MemberFactory(language="de", city="Tallinn")
    OrderFactory.create_batch(2, member=repeat)
    OrderFactory(member=MemberFactory(language="de", city="Tallinn"))
    stale = MemberFactory(language="de", city="Tallinn")
    OrderFactory.create_batch(2, member=stale, placed_at=long_ago)
    MemberFactory(language="de", city="Riga", status="blocked")
    MemberFactory(language="en", city="Riga")


def test_marketer_builds_a_nested_tree_previews_and_saves_it(admin_page, live_server):
    page = admin_page
    _audience_members()
    _open(page, live_server.url + reverse("admin:campaigns_targetgroup_add"))
    page.get_by_label("Name").fill("Baltic Germans")

    # a condition: the new row's field select takes the focus, for the keyboard
    _group_button(page, "rules", "Add condition").click()
    language = _node(page, "rules.and[0]")
    expect(language.get_by_label("Field")).to_be_focused()
    language.get_by_label("Field").select_option("language")
    expect(language.get_by_label("Operator")).to_have_value("eq")
    language.get_by_label("Value").fill("de")

    # an OR group of two conditions, one of them windowed
    _group_button(page, "rules", "Add group").click()
    expect(_node(page, "rules.and[1]").get_by_label("Match")).to_have_value("or")
    city = _node(page, "rules.and[1].or[0]")
    city.get_by_label("Field").select_option("city")
    city.get_by_label("Value").fill("Riga")
    _group_button(page, "rules.and[1]", "Add condition").click()
    orders = _node(page, "rules.and[1].or[1]")
    orders.get_by_label("Field").select_option("orders_count")
    orders.get_by_label("Operator").select_option("range")
    orders.get_by_label("from").fill("2")
    orders.get_by_label("in the last").fill("90")

    # a negated condition
    _group_button(page, "rules", "Add condition").click()
    status = _node(page, "rules.and[2]")
    status.get_by_label("Field").select_option("status")
    status.get_by_label("Value").select_option("blocked")
    status.get_by_label("NOT").check()
    expect(status).to_have_class("rb-node rb-condition rb-negated")

    page.get_by_role("button", name="Preview audience").click()
    expect(page.locator(".rb-size-count")).to_have_text("2")
    expect(page.locator('.rb-reachable td[data-channel="sms"]')).to_have_text("1")
    expect(page.locator(".rb-sample tbody tr")).to_have_count(2)
    assert not TargetGroup.objects.exists()

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(live_server.url + reverse("admin:campaigns_targetgroup_changelist"))
    assert TargetGroup.objects.get(name="Baltic Germans").rules == BUILT


def test_server_side_errors_are_shown_at_their_condition_on_preview_and_on_save(
        admin_page, live_server):
    page = admin_page
    _open(page, live_server.url + reverse("admin:campaigns_targetgroup_add"))
    page.get_by_label("Name").fill("Half-built")
    _group_button(page, "rules", "Add condition").click()
    orders = _node(page, "rules.and[0]")
    orders.get_by_label("Field").select_option("orders_count")
    orders.get_by_label("Operator").select_option("range")  # both ends left empty

    page.get_by_role("button", name="Preview audience").click()
    expect(page.locator(".rb-preview-result .errorlist")).to_have_text(
        "rules.and[0].value: must be [low, high] with at least one end set")
    expect(orders.locator(".rb-errors")).to_have_text(
        "Value: must be [low, high] with at least one end set")

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-rules > ul.errorlist")).to_have_text(
        "rules.and[0].value: must be [low, high] with at least one end set")
    expect(page.locator(".rule-builder[data-ready]")).to_be_attached()
    reloaded = _node(page, "rules.and[0]")
    expect(reloaded.get_by_label("Field")).to_have_value("orders_count")
    expect(reloaded.locator(".rb-errors")).to_have_text(
        "Value: must be [low, high] with at least one end set")
    assert not TargetGroup.objects.exists()


def test_a_stored_root_list_loads_into_the_builder_and_keeps_its_shape(admin_page, live_server):
    page = admin_page
    group = TargetGroupFactory(name="Listed", rules=[
        {"field": "language", "op": "eq", "value": "de"},
        {"not": {"or": [{"field": "city", "op": "eq", "value": "Riga"},
                        {"field": "city", "op": "eq", "value": "Tallinn"}]}},
    ])
    MemberFactory(language="en", city="Vilnius")
    MemberFactory(language="en", city="Riga")
    MemberFactory(language="de", city="Vilnius")
    _open(page, live_server.url + reverse("admin:campaigns_targetgroup_change",
                                          args=[group.pk]))

    expect(_node(page, "rules[1]").get_by_label("NOT").first).to_be_checked()
    expect(_node(page, "rules[1].not.or[1]").get_by_label("Value")).to_have_value("Tallinn")
    language = _node(page, "rules[0]")
    expect(language.get_by_label("Value")).to_have_value("de")
    language.get_by_label("Value").fill("en")
    page.get_by_role("button", name="Preview audience").click()
    expect(page.locator(".rb-size-count")).to_have_text("1")

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(live_server.url + reverse("admin:campaigns_targetgroup_changelist"))
    group.refresh_from_db()
    assert group.rules == [
        {"field": "language", "op": "eq", "value": "en"},
        {"not": {"or": [{"field": "city", "op": "eq", "value": "Riga"},
                        {"field": "city", "op": "eq", "value": "Tallinn"}]}},
    ]


def test_a_condition_can_be_built_and_previewed_from_the_keyboard(admin_page, live_server):
    page = admin_page
    MemberFactory.create_batch(2, language="de")
    MemberFactory(language="en")
    _open(page, live_server.url + reverse("admin:campaigns_targetgroup_add"))

    _group_button(page, "rules", "Add condition").focus()
    page.keyboard.press("Enter")
    page.keyboard.type("Langu")  # the select's type-ahead: "Language"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("de")
    page.keyboard.press("Enter")  # in a builder input: preview, not save

    expect(page.locator(".rb-size-count")).to_have_text("2")
    assert page.url == live_server.url + reverse("admin:campaigns_targetgroup_add")
    expect(page.get_by_label("Rules as JSON")).to_have_value(
        '{\n  "and": [\n    {\n      "field": "language",\n      "op": "eq",\n'
        '      "value": "de"\n    }\n  ]\n}')
