"""The campaign report: the admin page with its charts, its two CSV downloads and the API,
each for the roles that read reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from communications.services.attribution import orders_attribute
from tests.campaigns.factories import CampaignFactory
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def campaign():
    campaign = CampaignFactory(name="Winter", budget=Decimal("100.00"))
    mailing = MailingFactory(campaign=campaign, name="=HYPERLINK(evil)")
    member = MemberFactory(external_id="M-1")
    MessageFactory(mailing=mailing, member=member, status="delivered", cost=Decimal("0.50"),
                   created_at=DAY - timedelta(days=1), sent_at=DAY - timedelta(days=1),
                   delivered_at=DAY - timedelta(days=1))
    OrderFactory(member=member, external_id="O-1", placed_at=DAY, total=Decimal("25.00"))
    orders_attribute(placed_from=DAY, placed_to=DAY + timedelta(days=1))
    return campaign


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_report_page_shows_the_figures_and_charts(admin_as, campaign):
    response = admin_as("analyst").get(f"/admin/campaigns/campaign/{campaign.pk}/report/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "25.00 EUR" in page and "0.50 EUR" in page  # revenue and spend
    assert "4,900.0%" in page  # ROI: (25.00 - 0.50) / 0.50
    assert page.count('class="engage-chart"') == 4
    assert "Funnel per mailing" in page


def test_the_report_csv_has_a_line_per_mailing_and_the_totals(admin_as, campaign):
    response = admin_as("analyst").get(f"/admin/campaigns/campaign/{campaign.pk}/report.csv")

    header, mailing, total = _csv(response)
    assert header[:4] == ["mailing", "state", "started_at", "audience"]
    assert mailing[0] == "'=HYPERLINK(evil)"  # never a formula in a spreadsheet
    assert dict(zip(header, total, strict=True))["revenue"] == "25.00"


def test_the_credited_orders_csv_says_what_each_order_was_credited_for(admin_as, campaign):
    response = admin_as("analyst").get(f"/admin/campaigns/campaign/{campaign.pk}/credits.csv")

    header, row = _csv(response)
    line = dict(zip(header, row, strict=True))
    assert (line["order"], line["member"], line["touch"], line["revenue"]) == (
        "O-1", "M-1", "delivered", "25.00")


def test_support_cannot_read_campaign_reports(admin_as, campaign):
    client = admin_as("support")

    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/report/").status_code == 403
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/credits.csv").status_code == 403


def test_the_report_of_an_unknown_campaign_is_not_found(admin_as):
    assert admin_as("analyst").get("/admin/campaigns/campaign/999/report/").status_code == 404


def test_the_api_gives_the_campaigns_figures(api_as, campaign):
    response = api_as("analyst").get(f"/api/v1/campaigns/{campaign.pk}/report/")

    assert response.status_code == 200
    body = response.json()
    assert (body["orders"], body["revenue"], body["spent"]) == (1, "25.00", "0.50000")
    assert body["mailings"][0]["funnel"] == {"sent": 1, "delivered": 1, "opened": 0,
                                             "clicked": 0}


def test_support_cannot_read_the_campaign_figures_from_the_api(api_as, campaign):
    assert api_as("support").get(f"/api/v1/campaigns/{campaign.pk}/report/").status_code == 403


def test_a_credit_explains_itself_on_its_admin_page(admin_as, campaign):
    from communications.models import OrderCredit

    credit = OrderCredit.objects.get()
    response = admin_as("analyst").get(
        f"/admin/communications/ordercredit/{credit.pk}/change/")

    assert response.status_code == 200
    assert "Credited to mailing “=HYPERLINK(evil)” of campaign “Winter”" in (
        response.content.decode().replace("&ldquo;", "“").replace("&rdquo;", "”"))


@pytest.fixture
def held_out_campaign():
    """A mailing sent to four members (one buys) holding two out (one buys anyway)."""
    campaign = CampaignFactory(name="Spring")
    mailing = MailingFactory(campaign=campaign, name="Spring offer", state="completed",
                             started_at=DAY - timedelta(days=1), holdout_percent=30)
    for index in range(6):
        member = MemberFactory()
        held = index >= 4
        MessageFactory(mailing=mailing, member=member,
                       status="skipped" if held else "sent",
                       skip_reason="holdout" if held else "",
                       sent_at=None if held else DAY - timedelta(days=1),
                       created_at=DAY - timedelta(days=1))
        if index in (0, 4):
            OrderFactory(member=member, placed_at=DAY, total=Decimal("10.00"))
    return campaign


def test_the_report_shows_the_lift_over_the_control_group(admin_as, held_out_campaign):
    response = admin_as("analyst").get(
        f"/admin/campaigns/campaign/{held_out_campaign.pk}/report/")

    page = response.content.decode()
    assert "Lift over the control group" in page
    assert "25.0%" in page and "50.0%" in page and "-25.0%" in page


def test_the_report_csv_carries_the_lift(admin_as, held_out_campaign):
    csv_lines = _csv(admin_as("analyst").get(
        f"/admin/campaigns/campaign/{held_out_campaign.pk}/report.csv"))

    line = dict(zip(csv_lines[0], csv_lines[1], strict=True))
    assert (line["sent_conversion_rate"], line["holdout_conversion_rate"], line["lift"]) == (
        "0.25", "0.5", "-0.25")


def test_the_api_report_carries_the_lift(api_as, held_out_campaign):
    body = api_as("analyst").get(f"/api/v1/campaigns/{held_out_campaign.pk}/report/").json()

    lift = body["mailings"][0]["lift"]
    assert (lift["sent"]["members"], lift["holdout"]["members"], lift["absolute"]) == (4, 2, -0.25)
