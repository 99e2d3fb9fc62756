"""Date-rule triggers: birthdays, vouchers about to expire and lapsed buyers, each once per
occasion, on the member's local day and at the trigger's send hour in their time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from communications.models import Mailing, Message, Trigger
from communications.services import message_batch_dispatch
from communications.services.trigger_dates import trigger_dates_run
from communications.services.triggers import trigger_activate
from loyalty.models import Voucher
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

# Sunday 6 December 2026, 12:00 UTC: already Monday the 7th in Auckland (UTC+13), 07:00 on the
# 6th in New York, 13:00 in Berlin.
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def date_trigger(*, gateway=None, **trigger_fields) -> Mailing:
    mailing = MailingFactory(kind=Mailing.Kind.TRIGGER, target_group=None,
                             gateway=gateway or GatewayFactory())
    Trigger.objects.create(mailing=mailing, **trigger_fields)
    return trigger_activate(mailing=mailing, now=NOW - timedelta(days=1))


def occasions(mailing: Mailing) -> dict[int, str]:
    return dict(Message.objects.filter(mailing=mailing).values_list("member_id", "occasion"))


# --- birthdays ----------------------------------------------------------------------------------

def test_a_birthday_fires_on_the_members_local_day():
    auckland = consenting_member(timezone="Pacific/Auckland", birth_date=date(1990, 12, 7))
    new_york_tomorrow = consenting_member(timezone="America/New_York",
                                          birth_date=date(1990, 12, 7))
    new_york_today = consenting_member(timezone="America/New_York",
                                       birth_date=date(1985, 12, 6))
    consenting_member(birth_date=None)
    mailing = date_trigger(date_rule="birthday", send_hour=10)

    trigger_dates_run(now=NOW)

    assert occasions(mailing) == {auckland.pk: "birthday:2026-12-07",
                                  new_york_today.pk: "birthday:2026-12-06"}
    assert new_york_tomorrow.pk not in occasions(mailing)


def test_a_birthday_fires_once_however_often_the_day_is_looked_at():
    member = consenting_member(timezone="Europe/Berlin", birth_date=date(1990, 12, 6))
    mailing = date_trigger(date_rule="birthday")

    for hour in range(0, 11, 2):
        trigger_dates_run(now=NOW.replace(hour=hour))

    assert Message.objects.filter(mailing=mailing, member=member).count() == 1


def test_a_birthday_message_is_held_until_the_send_hour_in_the_members_zone():
    member = consenting_member(timezone="Pacific/Auckland", birth_date=date(1990, 12, 7))
    mailing = date_trigger(date_rule="birthday", send_hour=10)

    trigger_dates_run(now=NOW)

    message = Message.objects.get(mailing=mailing, member=member)
    # 10:00 on the 7th in Auckland (NZDT, UTC+13) is 21:00 on the 6th in UTC.
    assert message.not_before == datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    assert message.held_for == "local_time"


def test_a_birthday_message_goes_to_the_smtp_peer_at_the_send_hour(smtp_peer):
    member = consenting_member(timezone="Pacific/Auckland", birth_date=date(1990, 12, 7))
    mailing = date_trigger(date_rule="birthday", send_hour=10,
                           gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))
    trigger_dates_run(now=NOW)

    before = message_batch_dispatch(mailing_id=mailing.pk, now=datetime(2026, 12, 6, 20, 59,
                                                                        tzinfo=UTC))
    at_ten = message_batch_dispatch(mailing_id=mailing.pk, now=datetime(2026, 12, 6, 21, 0,
                                                                        tzinfo=UTC))

    assert before == {"claimed": 0}
    assert at_ten["sent"] == 1
    assert [r.rcpt_tos for r in smtp_peer.received] == [[member.email]]


def test_a_member_born_on_february_29_celebrates_on_the_28th_of_a_common_year():
    member = consenting_member(timezone="Europe/Berlin", birth_date=date(2000, 2, 29))
    mailing = date_trigger(date_rule="birthday")

    trigger_dates_run(now=datetime(2027, 2, 28, 12, 0, tzinfo=UTC))

    assert occasions(mailing) == {member.pk: "birthday:2027-02-28"}


# --- vouchers about to expire -------------------------------------------------------------------

def _voucher(member, *, expires_at: datetime, redeemed: bool = False) -> Voucher:
    return Voucher.objects.create(
        code=f"V-{Voucher.objects.count() + 1}", member=member, value=Decimal("5"),
        issued_at=NOW - timedelta(days=10), expires_at=expires_at,
        redeemed_at=NOW - timedelta(days=1) if redeemed else None)


def test_a_voucher_expiring_in_n_days_fires_once_per_voucher():
    member = consenting_member(timezone="Europe/Berlin")
    # 9 December in Berlin, three days after the 6th.
    expiring = _voucher(member, expires_at=datetime(2026, 12, 9, 22, 30, tzinfo=UTC))
    mailing = date_trigger(date_rule="voucher_expiring", days=3)

    trigger_dates_run(now=NOW)
    trigger_dates_run(now=NOW + timedelta(hours=1))

    assert list(Message.objects.filter(mailing=mailing).values_list("member_id", "occasion")) \
        == [(member.pk, f"voucher:{expiring.pk}")]


def test_vouchers_expiring_on_another_day_or_redeemed_do_not_fire():
    member = consenting_member(timezone="Europe/Berlin")
    # 23:30 UTC on the 9th is already the 10th in Berlin.
    _voucher(member, expires_at=datetime(2026, 12, 9, 23, 30, tzinfo=UTC))
    _voucher(member, expires_at=datetime(2026, 12, 8, 12, 0, tzinfo=UTC))
    _voucher(member, expires_at=datetime(2026, 12, 9, 12, 0, tzinfo=UTC), redeemed=True)
    mailing = date_trigger(date_rule="voucher_expiring", days=3)

    trigger_dates_run(now=NOW)

    assert occasions(mailing) == {}


# --- days since the last purchase ------------------------------------------------------------

def test_thirty_days_since_the_last_purchase_fires_once():
    lapsed = consenting_member(timezone="Europe/Berlin")
    # Two orders on 6 November in Berlin, nothing since.
    OrderFactory(member=lapsed, placed_at=datetime(2026, 11, 6, 9, 0, tzinfo=UTC))
    OrderFactory(member=lapsed, placed_at=datetime(2026, 11, 6, 22, 30, tzinfo=UTC))
    mailing = date_trigger(date_rule="days_since_last_purchase", days=30)

    trigger_dates_run(now=NOW)
    trigger_dates_run(now=NOW + timedelta(hours=3))
    trigger_dates_run(now=NOW + timedelta(days=1))

    assert occasions(mailing) == {lapsed.pk: "last_purchase:2026-11-06"}


def test_a_member_who_bought_again_since_is_not_lapsed():
    returning = consenting_member(timezone="Europe/Berlin")
    OrderFactory(member=returning, placed_at=datetime(2026, 11, 6, 9, 0, tzinfo=UTC))
    OrderFactory(member=returning, placed_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    mailing = date_trigger(date_rule="days_since_last_purchase", days=30)

    trigger_dates_run(now=NOW)

    assert occasions(mailing) == {}


def test_a_date_trigger_without_days_cannot_be_activated():
    mailing = MailingFactory(kind=Mailing.Kind.TRIGGER, target_group=None)
    Trigger.objects.create(mailing=mailing, date_rule="voucher_expiring")

    with pytest.raises(ValidationError, match="needs a number of days"):
        trigger_activate(mailing=mailing)
