from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from campaigns.models import Campaign
from campaigns.selectors_spend import campaign_spend
from communications.models import Mailing, Message
from communications.services import (
    mailing_prepare,
    mailing_resume,
    mailing_schedule,
    message_batch_dispatch,
)
from tests.campaigns.factories import CampaignFactory
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

State = Mailing.State
Status = Message.Status


def _sent(mailing: Mailing, cost: str, **fields) -> Message:
    return MessageFactory(mailing=mailing, status=Status.SENT, cost=Decimal(cost), **fields)


def _priced_mailing(*, campaign, price: str = "1.00", gateway_settings: dict | None = None,
                    **fields) -> Mailing:
    gateway = GatewayFactory(price_per_message=Decimal(price),
                             **({"settings": gateway_settings} if gateway_settings else {}))
    return MailingFactory(campaign=campaign, gateway=gateway, **fields)


# --- spend ----------------------------------------------------------------------------------

def test_spend_sums_the_message_costs_of_the_campaigns_mailings_only():
    spring, autumn = CampaignFactory(), CampaignFactory()
    _sent(MailingFactory(campaign=spring), "0.25")
    _sent(MailingFactory(campaign=spring), "1.50")
    _sent(MailingFactory(campaign=autumn), "7.00")
    _sent(MailingFactory(campaign=None), "9.00")

    spend = campaign_spend([spring.pk, autumn.pk])

    assert spend == {spring.pk: Decimal("1.75"), autumn.pk: Decimal("7.00")}


def test_spend_leaves_out_test_sends():
    campaign = CampaignFactory()
    mailing = MailingFactory(campaign=campaign)
    _sent(mailing, "2.00")
    _sent(mailing, "5.00", is_test=True)

    assert campaign_spend([campaign.pk]) == {campaign.pk: Decimal("2.00")}


def test_a_campaign_without_priced_messages_has_spent_nothing():
    campaign = CampaignFactory()
    MessageFactory(mailing=MailingFactory(campaign=campaign))  # queued: no cost yet

    assert campaign_spend([campaign.pk]) == {campaign.pk: Decimal(0)}


def test_spend_of_many_campaigns_is_one_query(django_assert_num_queries):
    campaigns = CampaignFactory.create_batch(5)
    for campaign in campaigns:
        _sent(MailingFactory(campaign=campaign), "1.00")

    with django_assert_num_queries(1):
        spend = campaign_spend([c.pk for c in campaigns])

    assert set(spend.values()) == {Decimal("1.00")}


# --- scheduling against the budget ------------------------------------------------------------

def _over_budget_mailing() -> Mailing:
    """3 reachable members at 1.00 each, in a campaign with 5.00 of which 3.00 are spent."""
    for _ in range(3):
        consenting_member()
    campaign = CampaignFactory(name="Spring", budget=Decimal("5.00"), currency="EUR")
    _sent(MailingFactory(campaign=campaign), "3.00")
    return _priced_mailing(campaign=campaign)


def test_a_mailing_over_the_remaining_budget_is_scheduled_with_a_warning():
    mailing = _over_budget_mailing()

    scheduled = mailing_schedule(mailing=mailing)

    assert scheduled.state == State.SCHEDULED
    assert scheduled.budget_warning == (
        "this mailing would spend an estimated 3.00 EUR of the 2.00 EUR left in campaign "
        "“Spring” (budget 5.00 EUR)")


def test_a_mailing_within_the_remaining_budget_is_scheduled_without_warning():
    consenting_member()
    mailing = _priced_mailing(campaign=CampaignFactory(budget=Decimal("5.00")))

    assert mailing_schedule(mailing=mailing).budget_warning == ""


def test_a_mailing_over_the_remaining_budget_is_refused_when_the_budget_blocks(settings):
    settings.ENGAGE_BUDGET_BLOCK = True
    mailing = _over_budget_mailing()

    with pytest.raises(ValidationError) as refused:
        mailing_schedule(mailing=mailing)

    assert refused.value.message_dict["budget"] == [
        "this mailing would spend an estimated 3.00 EUR of the 2.00 EUR left in campaign "
        "“Spring” (budget 5.00 EUR)"]
    mailing.refresh_from_db()
    assert mailing.state == State.DRAFT


def test_no_estimate_is_made_for_a_campaign_without_budget():
    consenting_member()
    without_campaign = _priced_mailing(campaign=None)
    without_budget = _priced_mailing(campaign=CampaignFactory(budget=None))
    mailing_schedule(mailing=_priced_mailing(campaign=None))  # warms the caches

    with CaptureQueriesContext(connection) as plain:
        mailing_schedule(mailing=without_campaign)
    with CaptureQueriesContext(connection) as unbudgeted:
        mailing_schedule(mailing=without_budget)

    # The campaign row is the only read added; the estimate counts the audience.
    assert len(unbudgeted) == len(plain) + 1


def test_the_api_schedule_answer_carries_the_budget_warning(marketer_client):
    mailing = _over_budget_mailing()

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {}, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["state"] == "scheduled"
    assert "3.00 EUR of the 2.00 EUR left" in response.json()["budget_warning"]


def test_the_api_schedule_answer_has_no_warning_within_budget(marketer_client):
    mailing = MailingFactory(campaign=CampaignFactory(budget=None))

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {}, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["budget_warning"] is None


def test_the_api_refuses_an_over_budget_schedule_naming_the_budget(marketer_client, settings):
    settings.ENGAGE_BUDGET_BLOCK = True
    mailing = _over_budget_mailing()

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {}, content_type="application/json")

    assert response.status_code == 400
    assert "3.00 EUR of the 2.00 EUR left" in str(response.json()["budget"])


# --- the budget cap ---------------------------------------------------------------------------

def _sending(mailing: Mailing) -> Mailing:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    assert mailing.state == State.SENDING
    return mailing


def test_a_mailing_of_a_campaign_at_its_budget_claims_nothing_and_is_paused(smtp_peer):
    for _ in range(2):
        consenting_member()
    campaign = CampaignFactory(budget=Decimal("4.00"), currency="EUR")
    _sent(MailingFactory(campaign=campaign), "4.00")
    mailing = _sending(_priced_mailing(campaign=campaign,
                                       gateway_settings=smtp_peer.gateway_settings()))

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    assert outcome["claimed"] == 0
    mailing.refresh_from_db()
    assert mailing.state == State.PAUSED
    assert mailing.failure_reason == "budget reached: spent 4.00 of 4.00 EUR"
    assert Message.objects.filter(mailing=mailing, status=Status.QUEUED).count() == 2
    assert not Message.objects.filter(mailing=mailing,
                                      status__in=[Status.SENDING, Status.SENT]).exists()
    assert smtp_peer.received == []


@pytest.fixture
def two_euro_campaign_sending(smtp_peer):
    """A campaign with a budget of 2.00 and its sending mailing to three members (1.00 each)."""
    for _ in range(3):
        consenting_member()
    campaign = CampaignFactory(budget=Decimal("2.00"))
    mailing = _sending(_priced_mailing(campaign=campaign,
                                       gateway_settings=smtp_peer.gateway_settings()))
    return campaign, mailing


def test_a_sending_mailing_stops_at_the_batch_after_its_spend_reaches_the_budget(
        two_euro_campaign_sending, settings):
    settings.ENGAGE_BUDGET_CHECK_SECONDS = 0  # the spend read on every batch
    campaign, mailing = two_euro_campaign_sending

    first = message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)
    second = message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)

    assert (first["sent"], second["claimed"]) == (2, 0)
    mailing.refresh_from_db()
    assert mailing.state == State.PAUSED
    assert mailing.failure_reason.startswith("budget reached: spent 2.00 of 2.00")
    assert campaign_spend([campaign.pk])[campaign.pk] == Decimal("2.00")


def test_a_mailing_resumed_after_the_budget_was_raised_sends_the_rest(
        two_euro_campaign_sending, settings):
    settings.ENGAGE_BUDGET_CHECK_SECONDS = 0
    campaign, mailing = two_euro_campaign_sending
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)  # paused by the cap

    Campaign.objects.filter(pk=campaign.pk).update(budget=Decimal("10.00"))
    mailing_resume(mailing=mailing)
    third = message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)

    mailing.refresh_from_db()
    assert third["sent"] == 1
    assert mailing.failure_reason == ""


def test_a_worker_reads_the_campaigns_spend_at_most_once_per_check_interval(
        two_euro_campaign_sending, settings):
    settings.ENGAGE_BUDGET_CHECK_SECONDS = 3600
    _, mailing = two_euro_campaign_sending

    first = message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)
    second = message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)

    # the second batch went on the spend read before the first: the overspend the interval allows
    assert (first["sent"], second["sent"]) == (2, 1)


def test_the_budget_cap_can_be_turned_off(smtp_peer, settings):
    settings.ENGAGE_BUDGET_CAP = False
    consenting_member()
    campaign = CampaignFactory(budget=Decimal("1.00"))
    _sent(MailingFactory(campaign=campaign), "1.00")
    mailing = _sending(_priced_mailing(campaign=campaign,
                                       gateway_settings=smtp_peer.gateway_settings()))

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    assert outcome["sent"] == 1
    mailing.refresh_from_db()
    assert mailing.state == State.COMPLETED


def test_a_mailing_without_a_campaign_budget_is_never_capped(smtp_peer):
    consenting_member()
    campaign = CampaignFactory(budget=None)
    _sent(MailingFactory(campaign=campaign), "1000.00")
    mailing = _sending(_priced_mailing(campaign=campaign,
                                       gateway_settings=smtp_peer.gateway_settings()))

    assert message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)["sent"] == 1


def test_the_budget_cap_costs_one_query_per_batch(smtp_peer):
    consenting_member()
    gateway_settings = smtp_peer.gateway_settings()
    warm_up, unbudgeted, budgeted = (
        _sending(_priced_mailing(campaign=CampaignFactory(budget=budget),
                                 gateway_settings=gateway_settings))
        for budget in (None, None, Decimal("100.00")))
    message_batch_dispatch(mailing_id=warm_up.pk, batch_size=10)

    with CaptureQueriesContext(connection) as without_cap:
        message_batch_dispatch(mailing_id=unbudgeted.pk, batch_size=10)
    with CaptureQueriesContext(connection) as with_cap:
        message_batch_dispatch(mailing_id=budgeted.pk, batch_size=10)

    assert len(with_cap) == len(without_cap) + 1


# --- the campaign API -------------------------------------------------------------------------

def _campaigns_api(user, *, pk: int | None = None):
    client = APIClient()
    client.force_authenticate(user)
    return client.get("/api/v1/campaigns/" if pk is None else f"/api/v1/campaigns/{pk}/")


def test_the_campaign_api_shows_goal_owner_status_budget_spend_remaining_and_channels(
    marketer,
):
    campaign = CampaignFactory(goal="Win back lapsed members", owner=marketer,
                               status="active", budget=Decimal("10.00"), currency="EUR")
    _sent(MailingFactory(campaign=campaign), "2.50")
    MailingFactory(campaign=campaign, template=TemplateFactory(channel="sms", subject=""))

    response = _campaigns_api(marketer, pk=campaign.pk)

    assert response.status_code == 200
    body = response.json()
    assert (body["goal"], body["owner"], body["status"]) == (
        "Win back lapsed members", marketer.pk, "active")
    assert (body["budget"], body["currency"]) == ("10.00", "EUR")
    assert Decimal(body["spend"]) == Decimal("2.50")
    assert Decimal(body["remaining"]) == Decimal("7.50")
    assert body["channels"] == ["email", "sms"]


def test_the_campaign_list_reads_spend_and_channels_without_a_query_per_campaign(
    marketer, django_assert_max_num_queries,
):
    for _ in range(6):
        campaign = CampaignFactory(budget=Decimal("3.00"))
        _sent(MailingFactory(campaign=campaign), "1.00")

    with django_assert_max_num_queries(4):
        response = _campaigns_api(marketer)

    rows = response.json()["results"]
    assert len(rows) == 6
    assert {(row["spend"], row["remaining"], tuple(row["channels"])) for row in rows} == {
        ("1.00000", "2.00000", ("email",))}


def test_a_campaign_without_budget_has_no_remaining(marketer):
    campaign = CampaignFactory(budget=None)

    assert _campaigns_api(marketer, pk=campaign.pk).json()["remaining"] is None
