from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from communications.models import Mailing, Message
from tests.campaigns.factories import CampaignFactory, PromoContentFactory
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:campaigns_campaign_changelist")
MAILINGS = reverse("admin:communications_mailing_changelist")


def _spent(campaign: Campaign, cost: str) -> None:
    MessageFactory(mailing=MailingFactory(campaign=campaign), status=Message.Status.SENT,
                   cost=Decimal(cost))


def _shown(response) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


# --- the campaign list ------------------------------------------------------------------------

def test_campaign_list_shows_status_owner_budget_spend_and_remaining(marketer_client, marketer):
    campaign = CampaignFactory(name="Spring", status="active", owner=marketer,
                               budget=Decimal("100.00"), currency="EUR")
    _spent(campaign, "12.50")

    response = marketer_client.get(CHANGELIST)

    row = [r for r in response.context["cl"].result_list if r.pk == campaign.pk][0]
    assert row.spent == Decimal("12.50")
    html = response.content.decode()
    for text in ("Spring", "Active", "marketer", "100.00 EUR", "12.50 EUR", "87.50 EUR"):
        assert text in html


def test_campaign_list_costs_the_same_queries_for_one_or_many_campaigns(marketer_client):
    _spent(CampaignFactory(budget=Decimal("5")), "1")
    with CaptureQueriesContext(connection) as one:
        marketer_client.get(CHANGELIST)
    for _ in range(8):
        _spent(CampaignFactory(budget=Decimal("5")), "1")

    with CaptureQueriesContext(connection) as nine:
        response = marketer_client.get(CHANGELIST)

    assert len(response.context["cl"].result_list) == 9
    assert len(nine) == len(one)


def test_campaign_list_filters_by_status(marketer_client):
    CampaignFactory(name="Running", status="active")
    CampaignFactory(name="Done", status="finished")

    response = marketer_client.get(CHANGELIST, {"status__exact": "finished"})

    assert [c.name for c in response.context["cl"].result_list] == ["Done"]


def test_campaign_list_filters_by_owner(marketer_client, marketer, django_user_model):
    other = django_user_model.objects.create_user("analyst", password="x" * 20)
    CampaignFactory(name="Mine", owner=marketer)
    CampaignFactory(name="Theirs", owner=other)

    response = marketer_client.get(CHANGELIST, {"owner__id__exact": marketer.pk})

    assert [c.name for c in response.context["cl"].result_list] == ["Mine"]


# --- the campaign page ------------------------------------------------------------------------

def test_campaign_page_shows_its_mailings_triggers_promo_content_and_channel_mix(
    marketer_client,
):
    campaign = CampaignFactory()
    MailingFactory(campaign=campaign, name="Spring newsletter")
    MailingFactory(campaign=campaign, name="Welcome SMS", kind=Mailing.Kind.TRIGGER,
                   template=TemplateFactory(channel="sms", subject=""))
    MailingFactory(name="Someone else's mailing")
    PromoContentFactory(campaign=campaign, title="Double points week")

    response = marketer_client.get(reverse("admin:campaigns_campaign_change",
                                           args=[campaign.pk]))

    html = response.content.decode()
    assert "Spring newsletter" in html
    assert "Welcome SMS" in html
    assert "Double points week" in html
    assert "Email, SMS" in html
    assert "Someone else" not in html


def test_a_campaign_is_created_with_goal_owner_and_status_in_the_admin(marketer_client,
                                                                       marketer):
    response = marketer_client.post(reverse("admin:campaigns_campaign_add"), {
        "name": "Autumn", "goal": "Reactivate", "owner": marketer.pk, "status": "planned",
        "budget": "250.00", "currency": "EUR", "attribution_touch": "opened",
        "attribution_window_days": "5"})

    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Autumn")
    assert (campaign.goal, campaign.owner, campaign.status) == ("Reactivate", marketer,
                                                                "planned")
    assert (campaign.attribution_touch, campaign.attribution_window_days) == ("opened", 5)


# --- scheduling a mailing over its campaign's budget ------------------------------------------

def _over_budget_mailing() -> Mailing:
    for _ in range(3):
        consenting_member()
    campaign = CampaignFactory(name="Spring", budget=Decimal("5.00"), currency="EUR")
    _spent(campaign, "3.00")
    return MailingFactory(campaign=campaign,
                          gateway=GatewayFactory(price_per_message=Decimal("1.00")))


def test_scheduling_over_budget_from_the_list_warns(marketer_client):
    mailing = _over_budget_mailing()

    response = marketer_client.post(MAILINGS, {"action": "schedule_selected", "index": 0,
                                               "_selected_action": [mailing.pk]}, follow=True)

    warnings = [text for level, text in _shown(response) if level == messages.WARNING]
    assert len(warnings) == 1
    assert "3.00 EUR of the 2.00 EUR left in campaign “Spring”" in warnings[0]
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SCHEDULED


def test_scheduling_over_budget_from_the_mailing_page_warns(marketer_client):
    mailing = _over_budget_mailing()
    at = timezone.localtime(timezone.now() + timezone.timedelta(days=1))

    response = marketer_client.post(
        reverse("admin:communications_mailing_change", args=[mailing.pk]),
        {"name": mailing.name, "campaign": mailing.campaign_id,
         "target_group": mailing.target_group_id, "template": mailing.template_id,
         "gateway": mailing.gateway_id, "scheduled_at_0": at.strftime("%Y-%m-%d"),
         "scheduled_at_1": at.strftime("%H:%M:%S"), "_schedule": "1",
         **ADMIN_NO_CASCADE_STEPS},
        follow=True)

    warnings = [text for level, text in _shown(response) if level == messages.WARNING]
    assert any("of the 2.00 EUR left" in text for text in warnings)
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SCHEDULED


def test_scheduling_over_budget_from_the_list_is_refused_when_the_budget_blocks(
    marketer_client, settings,
):
    settings.ENGAGE_BUDGET_BLOCK = True
    mailing = _over_budget_mailing()

    response = marketer_client.post(MAILINGS, {"action": "schedule_selected", "index": 0,
                                               "_selected_action": [mailing.pk]}, follow=True)

    errors = [text for level, text in _shown(response) if level == messages.ERROR]
    assert len(errors) == 1 and "of the 2.00 EUR left" in errors[0]
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.DRAFT
