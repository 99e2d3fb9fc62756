"""Sending at the same clock time in each member's time zone."""
from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services import (
    mailing_prepare,
    mailing_schedule,
    messages_claim,
)
from communications.services.schedules import local_time_start, scheduled_due_ids
from tests.communications.factories import MailingFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def _local_mailing(at: datetime) -> Mailing:
    mailing = MailingFactory(send_in_member_timezone=True)
    return mailing_schedule(mailing=mailing, at=at)


def _not_before(mailing: Mailing) -> dict[int, datetime | None]:
    return dict(Message.objects.filter(mailing=mailing).values_list("member_id", "not_before"))


def test_a_local_time_mailing_starts_when_the_earliest_zone_reaches_its_time():
    at = datetime(2030, 6, 1, 10, 0, tzinfo=UTC)  # the program runs on UTC
    mailing = _local_mailing(at)

    assert local_time_start(scheduled_at=at) == datetime(2030, 5, 31, 20, 0, tzinfo=UTC)
    assert mailing.pk not in scheduled_due_ids(now=datetime(2030, 5, 31, 19, 59, tzinfo=UTC))
    assert mailing.pk in scheduled_due_ids(now=datetime(2030, 5, 31, 20, 0, tzinfo=UTC))


def test_each_member_waits_for_the_time_in_their_own_zone():
    tokyo = consenting_member(timezone="Asia/Tokyo")
    new_york = consenting_member(timezone="America/New_York")
    day = timezone.now().date() + timedelta(days=3)
    at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC)
    mailing = _local_mailing(at)

    mailing_prepare(mailing_id=mailing.pk)

    held = _not_before(mailing)
    assert held[tokyo.pk] == datetime(day.year, day.month, day.day, 10, 0, tzinfo=TOKYO)
    assert held[new_york.pk] == datetime(day.year, day.month, day.day, 10, 0, tzinfo=NEW_YORK)
    assert set(Message.objects.filter(mailing=mailing).values_list("held_for", flat=True)) \
        == {Message.HoldReason.LOCAL_TIME}


def test_a_member_without_a_known_zone_gets_the_program_time():
    member = consenting_member(timezone="Mars/Olympus_Mons")
    at = timezone.now().replace(microsecond=0) + timedelta(days=2)
    mailing = _local_mailing(at)

    mailing_prepare(mailing_id=mailing.pk)

    assert _not_before(mailing)[member.pk] == at


def test_held_messages_are_not_claimed_before_their_time():
    consenting_member(timezone="Asia/Tokyo")
    mailing = _local_mailing(timezone.now() + timedelta(days=2))
    mailing_prepare(mailing_id=mailing.pk)

    assert messages_claim(mailing_id=mailing.pk, limit=10) == []


def test_a_member_whose_time_has_passed_when_it_starts_gets_it_at_once():
    early = consenting_member(timezone="Pacific/Kiritimati")  # UTC+14
    now = timezone.now()
    # Ten o'clock has passed in UTC+14 but not in UTC-10.
    late = consenting_member(timezone="Pacific/Honolulu")
    at = now + timedelta(hours=2)
    mailing = _local_mailing(at)

    mailing_prepare(mailing_id=mailing.pk)

    held = _not_before(mailing)
    assert held[early.pk] is None
    assert held[late.pk] is not None and held[late.pk] > now
    claimed = messages_claim(mailing_id=mailing.pk, limit=10)
    assert Message.objects.get(pk__in=claimed).member_id == early.pk
