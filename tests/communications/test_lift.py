"""The lift of a mailing over its control group, checked against figures computed by hand."""
from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.models import Mailing, Message
from communications.selectors.experiments import mailing_lift
from tests.campaigns.factories import CampaignFactory
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

Status = Message.Status
SkipReason = Message.SkipReason
START = timezone.now() - timedelta(days=10)


def _members(mailing, count: int, **message: object) -> list:
    members = [MemberFactory() for _ in range(count)]
    for member in members:
        MessageFactory(mailing=mailing, member=member, address=member.email, **message)
    return members


def _sent(mailing, count: int, status: str = Status.SENT) -> list:
    return _members(mailing, count, status=status, sent_at=START + timedelta(minutes=5))


def _held(mailing, count: int) -> list:
    return _members(mailing, count, status=Status.SKIPPED, skip_reason=SkipReason.HOLDOUT)


def _buy(members: list, total: str, *, after: timedelta = timedelta(days=1)) -> None:
    for member in members:
        OrderFactory(member=member, placed_at=START + after, total=Decimal(total))


@pytest.fixture
def mailing():
    return MailingFactory(started_at=START, holdout_percent=33,
                          campaign=CampaignFactory(attribution_window_days=7))


def _forty_sent_ten_bought_twenty_held_two_bought(mailing) -> tuple[list, list]:
    # 40 reached (some delivered, opened, clicked: reached all the same), 10 of them bought.
    sent = (_sent(mailing, 25) + _sent(mailing, 10, Status.DELIVERED)
            + _sent(mailing, 5, Status.CLICKED))
    held = _held(mailing, 20)
    _buy(sent[:10], "30.00")
    _buy(held[:2], "25.00")
    return sent, held


def test_conversion_rates_and_lift_match_the_hand_computed_figures(mailing):
    _forty_sent_ten_bought_twenty_held_two_bought(mailing)

    lift = mailing_lift(mailing=mailing)

    assert (lift.sent.members, lift.sent.converted) == (40, 10)
    assert (lift.holdout.members, lift.holdout.converted) == (20, 2)
    assert lift.sent.conversion_rate == pytest.approx(0.25)
    assert lift.holdout.conversion_rate == pytest.approx(0.10)
    assert lift.absolute == pytest.approx(0.15)
    assert lift.relative == pytest.approx(1.5)  # 0.15 / 0.10


def test_the_confidence_interval_is_the_wald_interval_computed_by_hand(mailing):
    _forty_sent_ten_bought_twenty_held_two_bought(mailing)

    lift = mailing_lift(mailing=mailing)

    # se = sqrt(.25 * .75 / 40 + .10 * .90 / 20) = sqrt(.0046875 + .0045) = 0.0958514...
    # margin = 1.959964 * se = 0.1878654; lift .15 -> [-0.0378654, 0.3378654]
    assert lift.ci_low == pytest.approx(-0.0378654, abs=1e-6)
    assert lift.ci_high == pytest.approx(0.3378654, abs=1e-6)
    assert math.isclose(lift.ci_high - lift.absolute, lift.absolute - lift.ci_low)


def test_revenue_per_member_divides_each_groups_revenue_by_its_size(mailing):
    sent, held = _forty_sent_ten_bought_twenty_held_two_bought(mailing)
    _buy(sent[:1], "12.50", after=timedelta(days=2))  # a second order of a converted member

    lift = mailing_lift(mailing=mailing)

    assert lift.sent.converted == 10  # members, not orders
    assert lift.sent.revenue == Decimal("312.50")  # 10 x 30.00 + 12.50
    assert lift.sent.revenue_per_member == Decimal("312.50") / 40
    assert lift.holdout.revenue == Decimal("50.00")
    assert lift.holdout.revenue_per_member == Decimal("2.50")


def test_orders_outside_the_window_and_members_in_neither_group_do_not_count(mailing):
    _forty_sent_ten_bought_twenty_held_two_bought(mailing)
    late, early = _sent(mailing, 2)
    _buy([late], "99.00", after=timedelta(days=8))  # past the campaign's 7 days
    _buy([early], "99.00", after=timedelta(hours=-1))  # before the start
    opted_out = _members(mailing, 3, status=Status.SKIPPED, skip_reason=SkipReason.OPTED_OUT)
    _buy(opted_out, "99.00")
    waiting = _members(mailing, 2, status=Status.QUEUED)
    _buy(waiting, "99.00")

    lift = mailing_lift(mailing=mailing)

    assert (lift.sent.members, lift.sent.converted) == (42, 10)
    assert (lift.holdout.members, lift.holdout.converted) == (20, 2)


def test_the_window_is_the_campaigns_attribution_window_unless_given(mailing):
    sent = _sent(mailing, 4)
    _held(mailing, 4)
    _buy(sent[:1], "10.00", after=timedelta(days=5))
    mailing.campaign.attribution_window_days = 3
    mailing.campaign.save()

    assert mailing_lift(mailing=mailing).sent.converted == 0
    assert mailing_lift(mailing=mailing, window_days=7).sent.converted == 1
    assert mailing_lift(mailing=mailing, window_days=7).window_days == 7


def test_without_a_holdout_there_is_no_lift_to_give(mailing):
    _sent(mailing, 5)

    lift = mailing_lift(mailing=mailing)

    assert lift.holdout.members == 0
    assert lift.absolute is None and lift.ci_low is None and lift.relative is None


def test_the_lift_is_two_aggregate_queries_whatever_the_group_sizes(mailing):
    _forty_sent_ten_bought_twenty_held_two_bought(mailing)
    fresh = Mailing.objects.get(pk=mailing.pk)

    with CaptureQueriesContext(connection) as queries:
        mailing_lift(mailing=fresh)

    # The campaign (for its window), then the group sizes, then the conversions.
    assert len(queries) == 3
