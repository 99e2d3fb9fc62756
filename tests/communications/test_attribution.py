"""Orders credited to the campaign and mailing that touched the member last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from communications.models import AttributionPosition, Message, OrderCredit
from communications.services.attribution import (
    attribution_pass,
    credit_explain,
    orders_attribute,
)
from tests.campaigns.factories import CampaignFactory
from tests.communications import attribution_parity
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def _touch(member, *, at: datetime, mailing=None, status="delivered", **fields) -> Message:
    times = {"delivered": {"delivered_at": at}, "opened": {"opened_at": at},
             "clicked": {"clicked_at": at}}[status]
    return MessageFactory(member=member, mailing=mailing or MailingFactory(), status=status,
                          created_at=at - timedelta(minutes=5), sent_at=at,
                          **{**times, **fields})


def _attribute_day(day: datetime = DAY) -> None:
    orders_attribute(placed_from=day - timedelta(days=1), placed_to=day + timedelta(days=1))


def test_an_order_is_credited_to_the_latest_touch_before_it():
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(days=3))
    latest = _touch(member, at=DAY - timedelta(days=1))
    order = OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    credit = OrderCredit.objects.get(order=order)
    assert (credit.message_id, credit.mailing_id, credit.campaign_id) == (
        latest.pk, latest.mailing_id, latest.mailing.campaign_id)
    assert (credit.touch, credit.touched_at, credit.revenue) == (
        "delivered", DAY - timedelta(days=1), order.total)


def test_a_touch_after_the_order_is_not_credited():
    member = MemberFactory()
    _touch(member, at=DAY + timedelta(minutes=1))
    OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    assert not OrderCredit.objects.exists()


def test_a_touch_older_than_its_campaigns_window_is_not_credited():
    member = MemberFactory()
    campaign = CampaignFactory(attribution_window_days=2)
    _touch(member, at=DAY - timedelta(days=2, minutes=1), mailing=MailingFactory(campaign=campaign))
    OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    assert not OrderCredit.objects.exists()


def test_each_campaign_applies_its_own_window():
    member = MemberFactory()
    wide = MailingFactory(campaign=CampaignFactory(attribution_window_days=10))
    narrow = MailingFactory(campaign=CampaignFactory(attribution_window_days=1))
    _touch(member, at=DAY - timedelta(days=5), mailing=wide)
    _touch(member, at=DAY - timedelta(days=2), mailing=narrow)  # later, but out of its window
    order = OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    assert OrderCredit.objects.get(order=order).mailing == wide


def test_a_campaign_that_counts_clicks_ignores_deliveries_and_opens():
    member = MemberFactory()
    clicks_only = CampaignFactory(attribution_touch="clicked")
    _touch(member, at=DAY - timedelta(hours=1), mailing=MailingFactory(campaign=clicks_only),
           status="opened")
    clicked = _touch(member, at=DAY - timedelta(hours=5),
                     mailing=MailingFactory(campaign=clicks_only), status="clicked")
    order = OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    credit = OrderCredit.objects.get(order=order)
    assert (credit.message_id, credit.touch) == (clicked.pk, "clicked")


def test_a_message_counts_at_its_latest_touch_before_the_order():
    member = MemberFactory()
    message = _touch(member, at=DAY - timedelta(days=2), status="clicked",
                     delivered_at=DAY - timedelta(days=2, hours=1),
                     opened_at=DAY - timedelta(days=2, minutes=30))
    Message.objects.filter(pk=message.pk).update(clicked_at=DAY + timedelta(hours=1))
    order = OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    credit = OrderCredit.objects.get(order=order)
    assert (credit.touch, credit.touched_at) == ("opened", DAY - timedelta(days=2, minutes=30))


def test_test_sends_and_messages_without_a_campaign_are_never_credited():
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(hours=1), is_test=True)
    _touch(member, at=DAY - timedelta(hours=2), mailing=MailingFactory(campaign=None))
    OrderFactory(member=member, placed_at=DAY)

    _attribute_day()

    assert not OrderCredit.objects.exists()


def test_another_members_touch_is_not_credited():
    _touch(MemberFactory(), at=DAY - timedelta(hours=1))
    OrderFactory(member=MemberFactory(), placed_at=DAY)

    _attribute_day()

    assert not OrderCredit.objects.exists()


def test_an_order_gets_one_credit_however_often_attribution_runs():
    member = MemberFactory()
    first = _touch(member, at=DAY - timedelta(days=1))
    order = OrderFactory(member=member, placed_at=DAY)
    _attribute_day()
    _touch(member, at=DAY - timedelta(hours=1))

    _attribute_day()

    assert list(OrderCredit.objects.values_list("order_id", "message_id")) == [
        (order.pk, first.pk)]


def test_redoing_a_period_takes_in_receipts_that_came_late():
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(days=1))
    order = OrderFactory(member=member, placed_at=DAY)
    _attribute_day()
    late = _touch(member, at=DAY - timedelta(hours=1), status="opened")

    run = orders_attribute(placed_from=DAY, placed_to=DAY + timedelta(days=1), redo=True)

    assert (run.orders, run.credited) == (1, 1)
    assert OrderCredit.objects.get(order=order).message_id == late.pk


def test_the_credit_explains_itself():
    member = MemberFactory()
    mailing = MailingFactory(name="Winter sale", campaign=CampaignFactory(name="Winter"))
    _touch(member, at=DAY - timedelta(hours=3), mailing=mailing, status="clicked")
    order = OrderFactory(member=member, placed_at=DAY)
    _attribute_day()

    text = credit_explain(OrderCredit.objects.get(order=order))

    assert "mailing “Winter sale” of campaign “Winter”" in text
    assert "was clicked at 2026-11-30" in text and "7-day window" in text


def test_the_first_pass_starts_reading_from_now():
    OrderFactory(placed_at=DAY)

    assert attribution_pass(now=DAY) == 0
    assert AttributionPosition.objects.get().read_until == DAY


def test_a_pass_credits_the_orders_recorded_since_the_last_one():
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(hours=1))
    attribution_pass(now=DAY)
    before = OrderFactory(member=member, placed_at=DAY, recorded_at=DAY - timedelta(seconds=1))
    after = OrderFactory(member=member, placed_at=DAY, recorded_at=DAY + timedelta(seconds=1))

    credited = attribution_pass(now=DAY + timedelta(minutes=1))

    assert credited == 1
    assert list(OrderCredit.objects.values_list("order_id", flat=True)) == [after.pk]
    assert not OrderCredit.objects.filter(order=before).exists()
    assert AttributionPosition.objects.get().read_until == DAY + timedelta(minutes=1)


def test_the_command_rejects_a_bad_day_in_one_line():
    with pytest.raises(CommandError, match="not a date"):
        call_command("attribute_orders", "--day", "2026-13-01")


def test_the_command_redoes_the_days_it_is_given(capsys):
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(hours=1))
    OrderFactory(member=member, placed_at=DAY + timedelta(hours=10))

    call_command("attribute_orders", "--day", "2026-12-01")

    assert "1 orders placed 2026-12-01 to 2026-12-01: 1 credited" in capsys.readouterr().out
    assert OrderCredit.objects.count() == 1


def test_generated_orders_are_credited_as_the_rule_computed_by_hand_says():
    attribution_parity.seed()

    found = attribution_parity.evaluate()

    assert len(found["expected"]) > 10, "the generated data should credit some orders"
    assert found["credited"] == found["expected"]


@pytest.mark.slow
def test_sqlite_credits_the_generated_orders_as_postgresql_does(tmp_path):
    env = {**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "ENGAGE_VAR_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "tests.communications.attribution_parity"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    on_sqlite = json.loads(run.stdout)
    attribution_parity.seed()

    on_postgresql = attribution_parity.evaluate()

    assert on_sqlite["credited"] == on_sqlite["expected"]
    assert on_sqlite["credited"] == on_postgresql["credited"]


def test_the_credit_copies_the_orders_discount_and_points():
    member = MemberFactory()
    _touch(member, at=DAY - timedelta(hours=1))
    OrderFactory(member=member, placed_at=DAY, total=Decimal("50.00"),
                 discount=Decimal("5.00"), points_earned=50)

    _attribute_day()

    credit = OrderCredit.objects.get()
    assert (credit.revenue, credit.discount, credit.points) == (Decimal("50.00"),
                                                                Decimal("5.00"), 50)
