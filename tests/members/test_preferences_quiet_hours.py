"""The member's own quiet hours, set in their preferences, hold a mailing's messages when a batch
is claimed, on every channel, as the program's quiet hours do per channel."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, time, timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from communications.models import Mailing, Message, MessageStatusChange
from communications.services import mailing_prepare, mailing_schedule, messages_claim
from communications.services.compliance import messages_expire
from members.models import Member
from tests.communications.factories import MailingFactory, sms_mailing
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

# 13:00 in Berlin (the factories' time zone), outside the program's quiet hours (21:00-08:00).
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def default_quiet_hours():
    """The program's quiet hours the migration seeds (a transactional test elsewhere in the run
    flushes them)."""
    seed = importlib.import_module("communications.migrations.0008_compliance")
    seed.quiet_hours_defaults(django_apps, None)


def _sending(mailing: Mailing) -> Mailing:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing


def _quiet(member: Member, starts: time, ends: time) -> Member:
    Member.objects.filter(pk=member.pk).update(quiet_hours_start=starts, quiet_hours_end=ends)
    return member


def _message(mailing: Mailing, member: Member) -> Message:
    return Message.objects.get(mailing=mailing, member=member)


def test_an_email_inside_the_members_own_quiet_hours_is_held_until_they_end():
    member = _quiet(consenting_member(), time(12), time(14))  # 12:00-14:00 in Berlin
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert claimed == []
    assert (message.status, message.held_for) == ("queued", "member_quiet")
    assert message.not_before == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)  # 14:00 CET


def test_a_member_outside_their_own_quiet_hours_is_claimed():
    member = _quiet(consenting_member(), time(22), time(7))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_only_the_member_with_quiet_hours_is_held_in_a_batch():
    quiet = _quiet(consenting_member(), time(12), time(14))
    awake = consenting_member()
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, awake).pk]
    assert _message(mailing, quiet).held_for == "member_quiet"


def test_the_later_of_the_programs_and_the_members_quiet_hours_holds_the_sms():
    member = _quiet(consenting_member(channel="sms"), time(20), time(9, 30))
    mailing = _sending(sms_mailing())
    berlin_night = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)  # 22:30 in Berlin

    messages_claim(mailing_id=mailing.pk, limit=10, now=berlin_night)

    message = _message(mailing, member)
    # the program's window opens at 08:00, the member's at 09:30 (CET)
    assert (message.held_for, message.not_before) == (
        "member_quiet", datetime(2026, 3, 11, 8, 30, tzinfo=UTC))


def test_the_programs_quiet_hours_still_hold_when_the_members_end_earlier():
    member = _quiet(consenting_member(channel="sms"), time(22), time(6))
    mailing = _sending(sms_mailing())
    berlin_night = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)

    messages_claim(mailing_id=mailing.pk, limit=10, now=berlin_night)

    message = _message(mailing, member)
    assert (message.held_for, message.not_before) == (
        "quiet_hours", datetime(2026, 3, 11, 7, 0, tzinfo=UTC))


def test_the_hold_is_recorded_in_the_messages_history():
    member = _quiet(consenting_member(), time(12), time(14))
    mailing = _sending(MailingFactory())

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    change = MessageStatusChange.objects.get(message=_message(mailing, member))
    assert (change.status, change.code, change.source) == ("queued", "member_quiet",
                                                           "compliance")
    assert "the member's own quiet hours" in change.detail


def test_own_quiet_hours_ending_after_the_lifetime_skip_the_message():
    member = _quiet(consenting_member(), time(12), time(20))
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=1)))
    Mailing.objects.filter(pk=mailing.pk).update(started_at=NOON - timedelta(minutes=10))

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "quiet_hours_expired")


def test_a_message_still_held_by_own_quiet_hours_when_the_lifetime_ends_is_skipped():
    member = _quiet(consenting_member(), time(12), time(14))
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=3)))
    # the lifetime ends at 13:30 UTC, half an hour after the quiet hours (14:00 CET)
    Mailing.objects.filter(pk=mailing.pk).update(started_at=NOON - timedelta(hours=1, minutes=30))
    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)
    assert _message(mailing, member).held_for == "member_quiet"

    messages_expire(now=NOON + timedelta(hours=1, minutes=45), mailing_id=mailing.pk)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "quiet_hours_expired")


def test_quiet_hours_set_in_the_app_hold_the_next_claim(member_api_client):
    member = consenting_member()
    member_api_client(member).put("/api/v1/me/preferences/", {
        "quiet_hours": {"starts_at": "12:30", "ends_at": "13:30"}}, format="json")
    mailing = _sending(MailingFactory())

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert _message(mailing, member).held_for == "member_quiet"


def test_screening_costs_the_same_queries_whatever_the_number_of_quiet_members():
    def queries_for(members: int) -> int:
        people = [consenting_member() for _ in range(members)]
        for person in people[::2]:
            _quiet(person, time(12), time(14))
        mailing = _sending(MailingFactory())
        with CaptureQueriesContext(connection) as queries:
            messages_claim(mailing_id=mailing.pk, limit=100, now=NOON)
        return len(queries)

    assert queries_for(2) == queries_for(30)
