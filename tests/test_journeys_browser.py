"""The back office's main journeys in a real browser, one per role: Debian's Chromium against
the live server, a real Celery worker sending through an SMTP server on loopback. Each step
leaves a full-page screenshot in var/test-artifacts/screenshots/journey-<role>-*.png."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from campaigns.models import Campaign, TargetGroup
from communications.models import Mailing, Message
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.conftest import screenshot, wait_until
from tests.loyalty.factories import OrderFactory
from tests.members.factories import consenting_member

pytestmark = [pytest.mark.browser, pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"


@pytest.fixture
def sign_in(browser_page: Page, live_server) -> Callable[[str], Page]:
    """Sign the browser in to the admin through its login form as a staff user of a role."""

    def sign(role: str) -> Page:
        user = User.objects.create_user(username=role, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        page = browser_page
        page.goto(live_server.url + reverse("admin:login"))
        page.get_by_label("Username").fill(role)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(live_server.url + reverse("admin:index"))
        return page
    return sign


def _shot(page: Page, role: str, step: str) -> None:
    screenshot(page, f"journey-{role}-{step}")


def _completed(mailing: Mailing) -> bool:
    mailing.refresh_from_db()
    return mailing.state == Mailing.State.COMPLETED


def test_marketer_builds_an_audience_and_an_ab_mailing_watches_it_and_reads_the_report(
        sign_in, live_server, smtp_peer, celery_worker_process):
    english = ("Ann", "Bob", "Cid", "Dan", "Eli", "Fay", "Gus", "Hal")
    for name in english:
        consenting_member(first_name=name, language="en")
    consenting_member(first_name="Dora", language="de")
    TemplateFactory(name="Offer A", channel="email", subject="Winter offer A")
    TemplateFactory(name="Offer B", channel="email", subject="Winter offer B")
    GatewayFactory(name="Loopback SMTP", channel="email", settings=smtp_peer.gateway_settings(),
                   price_per_message=Decimal("0.01"))
    page = sign_in("marketer")
    expect(page.get_by_role("table", name="Sending now")).to_be_visible()
    _shot(page, "marketer", "1-dashboard")

    # the audience: English speakers, built with the rule builder
    page.goto(live_server.url + reverse("admin:campaigns_targetgroup_add"))
    expect(page.locator(".rule-builder[data-ready]")).to_be_attached()
    page.get_by_label("Name").fill("English speakers")
    page.locator('.rule-builder [data-path="rules"]').locator(
        ":scope > .rb-group-actions").get_by_role("button", name="Add condition").click()
    condition = page.locator('.rule-builder [data-path="rules.and[0]"]')
    condition.get_by_label("Field").select_option("language")
    condition.get_by_label("Value").fill("en")
    page.get_by_role("button", name="Preview audience").click()
    expect(page.locator(".rb-size-count")).to_have_text(str(len(english)))
    _shot(page, "marketer", "2-target-group")
    page.get_by_role("button", name="Save", exact=True).click()
    group = TargetGroup.objects.get(name="English speakers")

    # the campaign
    page.goto(live_server.url + reverse("admin:campaigns_campaign_add"))
    page.get_by_label("Name").fill("Winter")
    page.get_by_label("Budget").fill("100")
    page.get_by_label("Status").select_option("active")
    page.get_by_role("button", name="Save", exact=True).click()
    campaign = Campaign.objects.get(name="Winter")

    # the mailing, through the wizard: A/B test on half the audience, then start it
    page.goto(live_server.url + reverse("admin:communications_mailing_wizard"))
    page.get_by_label("Name").fill("Winter offer")
    page.get_by_label("Campaign").select_option(str(campaign.pk))
    page.get_by_label("Target group").select_option(str(group.pk))
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Template").select_option(label="Offer A [email/en]")
    page.get_by_label("Variant B").select_option(label="Offer B [email/en]")
    page.get_by_label("A/B test %").fill("50")
    page.get_by_label("A/B test hours").fill("1")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Gateway").select_option(label="Loopback SMTP (email/smtp)")
    page.get_by_label("Start now").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Review and create")).to_be_visible()
    _shot(page, "marketer", "3-wizard-review")
    page.get_by_role("button", name="Create the mailing").click()
    expect(page.locator(".messagelist")).to_contain_text("created and scheduled to start now")
    mailing = Mailing.objects.get(name="Winter offer")

    # watch it: the test part goes out, the winner is chosen early, the rest follows. The test
    # part is about half the audience: each member is drawn by a hash of mailing and member.
    test_part = Message.objects.filter(mailing=mailing, variant__isnull=False)
    wait_until(lambda: test_part.exists() and not test_part.exclude(status="sent").exists(),
               timeout=60, what="the A/B test part to be sent")
    page.reload()
    _shot(page, "marketer", "4-mailing-testing")
    page.get_by_role("button", name="Choose the winner now").click()
    wait_until(lambda: _completed(mailing), timeout=60, what="the mailing to complete")
    assert len(smtp_peer.received) == len(english)
    page.reload()
    expect(page.locator("#mailing-report")).to_contain_text("Completed")
    _shot(page, "marketer", "5-mailing-completed")

    # a member buys twice; the orders are credited to the campaign
    # (SMTP has no delivery reports: the receipt of one message is recorded as a provider's)
    buyer = Message.objects.filter(mailing=mailing, status="sent").first().member
    Message.objects.filter(mailing=mailing, member=buyer).update(
        delivered_at=timezone.now() - timedelta(seconds=2))
    OrderFactory(member=buyer, placed_at=timezone.now(), total=Decimal("40.00"))
    OrderFactory(member=buyer, placed_at=timezone.now(), total=Decimal("20.00"))
    call_command("attribute_orders", "--day", timezone.localdate().isoformat())
    page.goto(live_server.url + reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    expect(page.locator(".campaign-figures")).to_contain_text("60.00 EUR")
    _shot(page, "marketer", "6-campaign-report")


@pytest.fixture
def finished_campaign() -> Campaign:
    campaign = Campaign.objects.create(name="Autumn", budget=Decimal("50"))
    mailing = MailingFactory(name="Autumn offer", campaign=campaign,
                             state=Mailing.State.COMPLETED, started_at=timezone.now())
    member = consenting_member(first_name="Eve")
    now = timezone.now()
    Message.objects.create(mailing=mailing, member=member, channel="email", address=member.email,
                           status="delivered", cost=Decimal("0.02"), created_at=now,
                           sent_at=now, delivered_at=now, updated_at=now)
    OrderFactory(member=member, placed_at=now, total=Decimal("30.00"))
    call_command("attribute_orders", "--day", timezone.localdate().isoformat())
    return campaign


def test_analyst_reads_the_reports_and_cannot_send(sign_in, live_server, finished_campaign):
    page = sign_in("analyst")
    _shot(page, "analyst", "1-dashboard")
    page.goto(live_server.url + reverse("admin:campaigns_campaign_report",
                                        args=[finished_campaign.pk]))
    expect(page.locator(".campaign-figures")).to_contain_text("30.00 EUR")
    expect(page.get_by_role("img", name="Funnel per mailing")).to_be_visible()
    _shot(page, "analyst", "2-campaign-report")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report as CSV").click()
    assert download.value.suggested_filename == f"campaign-{finished_campaign.pk}-report.csv"

    response = page.goto(live_server.url + reverse("admin:communications_mailing_wizard"))
    assert response.status == 403
    _shot(page, "analyst", "3-no-sending")


def test_support_finds_a_member_and_sees_no_campaign(sign_in, live_server, finished_campaign):
    page = sign_in("support")
    _shot(page, "support", "1-home")
    page.goto(live_server.url + reverse("admin:members_member_changelist") + "?q=Eve")
    expect(page.locator("#result_list")).to_contain_text("Eve")
    _shot(page, "support", "2-member-search")

    response = page.goto(live_server.url + reverse("admin:campaigns_campaign_report",
                                                   args=[finished_campaign.pk]))
    assert response.status == 403


def test_administrator_checks_a_gateway_and_reads_the_audit_log(sign_in, live_server,
                                                                 smtp_peer):
    gateway = GatewayFactory(name="Loopback SMTP", channel="email",
                             settings=smtp_peer.gateway_settings())
    page = sign_in("administrator")
    _shot(page, "administrator", "1-home")
    page.goto(live_server.url + reverse("admin:communications_gateway_change",
                                        args=[gateway.pk]))
    page.get_by_label("Name").fill("Loopback SMTP relay")
    page.get_by_role("button", name="Save", exact=True).click()
    _shot(page, "administrator", "2-gateways")

    page.goto(live_server.url + reverse("admin:auditlog_logentry_changelist"))
    expect(page.locator("#result_list")).to_contain_text("Loopback SMTP relay")
    _shot(page, "administrator", "3-audit-log")
