"""A campaign's figures, checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from campaigns.selectors_metrics import campaign_metrics
from communications.services.attribution import orders_attribute
from loyalty.integration.services import order_refund
from tests.campaigns.factories import CampaignFactory
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def _sent(mailing, member, *, cost: str | None = "0.05", **fields):
    fields = {"status": "sent", "sent_at": DAY - timedelta(days=1), **fields}
    return MessageFactory(mailing=mailing, member=member, created_at=DAY - timedelta(days=1),
                          cost=None if cost is None else Decimal(cost), **fields)


@pytest.fixture
def campaign():
    """Two mailings, four members reached, two of them buying three orders (one refunded in
    full, one in part), and one message that failed."""
    campaign = CampaignFactory(budget=Decimal("10.00"))
    first, second = MailingFactory(campaign=campaign), MailingFactory(campaign=campaign)
    ana, ben, cem, dan = (MemberFactory() for _ in range(4))
    touched = DAY - timedelta(hours=20)
    _sent(first, ana, status="delivered", delivered_at=touched)
    _sent(first, ben, status="clicked", delivered_at=touched, clicked_at=touched)
    _sent(first, cem)
    _sent(second, dan, status="delivered", delivered_at=touched)
    _sent(second, ana, status="failed", cost=None, sent_at=None)
    OrderFactory(member=ana, placed_at=DAY, total=Decimal("30.00"), discount=Decimal("3.00"),
                 points_earned=30)
    partly = OrderFactory(member=ben, placed_at=DAY, total=Decimal("50.00"),
                          discount=Decimal("5.00"), points_earned=50)
    refunded = OrderFactory(member=ben, placed_at=DAY + timedelta(hours=1),
                            total=Decimal("20.00"), points_earned=20)
    OrderFactory(member=cem, placed_at=DAY)  # cem's message was never delivered
    orders_attribute(placed_from=DAY, placed_to=DAY + timedelta(days=1))
    order_refund(external_id=partly.external_id, amount=Decimal("10.00"))
    order_refund(external_id=refunded.external_id)
    return campaign


def test_spend_and_reach_come_from_the_messages(campaign):
    metrics = campaign_metrics(campaign)

    assert metrics.spent == Decimal("0.20")  # four sent messages at 0.05
    assert (metrics.messages_sent, metrics.members_reached) == (4, 4)
    assert metrics.budget_used == Decimal("0.02")


def test_orders_and_revenue_count_credits_net_of_refunds(campaign):
    metrics = campaign_metrics(campaign)

    # ana 30.00 + ben 50.00 - 10.00; ben's second order was refunded in full
    assert (metrics.orders, metrics.revenue) == (2, Decimal("70.00"))
    assert metrics.average_order == Decimal("35.00")
    assert (metrics.discounts, metrics.points) == (Decimal("8.00"), 80)


def test_ratios_are_worked_out_from_the_figures(campaign):
    metrics = campaign_metrics(campaign)

    assert metrics.active_members == 2
    assert metrics.cost_per_member_reached == Decimal("0.05")
    assert metrics.acquisition_cost == Decimal("0.10")
    assert metrics.conversion == Decimal("0.5")
    assert metrics.roi == Decimal("349")  # (70.00 - 0.20) / 0.20


def test_each_mailing_has_its_funnel_cost_and_revenue(campaign):
    first, second = campaign_metrics(campaign).mailings

    assert first.funnel == {"sent": 3, "delivered": 2, "opened": 1, "clicked": 1}
    assert (first.spent, first.orders, first.revenue) == (Decimal("0.15"), 2, Decimal("70.00"))
    assert (second.audience, second.failed, second.orders) == (2, 1, 0)
    assert second.roi == Decimal("-1")


def test_a_campaign_without_messages_has_no_ratios():
    metrics = campaign_metrics(CampaignFactory())

    assert (metrics.spent, metrics.orders, metrics.mailings) == (0, 0, [])
    assert metrics.roi is None and metrics.conversion is None and metrics.average_order is None


def test_the_figures_take_five_queries_however_many_mailings(campaign,
                                                             django_assert_num_queries):
    for _ in range(3):
        _sent(MailingFactory(campaign=campaign), MemberFactory())

    # the mailings and four aggregates, in a savepoint here with its work_mem setting
    with django_assert_num_queries(5 + 3):
        campaign_metrics(campaign)
