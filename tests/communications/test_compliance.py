"""Compliance when a batch is claimed: consent as it is now, frequency caps across mailings,
quiet hours in the member's time zone, and what a mailing's message lifetime ends."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from communications.models import FrequencyCap, Mailing, Message, MessageStatusChange, QuietHours
from communications.services import (
    mailing_prepare,
    mailing_schedule,
    message_batch_dispatch,
    messages_claim,
)
from communications.services.compliance import messages_expire, quiet_window_opens
from communications.services.statuses import StatusChange, message_statuses_apply
from members.services.consents import consent_record
from members.services.privacy import member_erase
from members.services.suppressions import suppression_add
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    FrequencyCapFactory,
    MailingFactory,
    MessageFactory,
    sms_mailing,
)
from tests.members.factories import SubscriptionCategoryFactory, consenting_member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_quiet_hours():
    """The rows the migration seeds: a test with transaction=True elsewhere in the run flushes
    every table, data migrations' rows included, so they are put back for each test here."""
    seed = importlib.import_module("communications.migrations.0008_compliance")
    seed.quiet_hours_defaults(django_apps, None)

Status = Message.Status
# 13:00 in Berlin (the factories' member time zone): outside any default quiet hours.
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
# 22:30 in Berlin, 21:30 UTC.
BERLIN_NIGHT = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)


def _sending(mailing: Mailing) -> Mailing:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing


def _message(mailing: Mailing, member) -> Message:
    return Message.objects.get(mailing=mailing, member=member)


def _sent_before(member, *, at: datetime, channel: str = "email", **fields) -> Message:
    """A marketing message of another mailing that went out to the member at `at`."""
    return MessageFactory(member=member, channel=channel, status=Status.SENT, sent_at=at,
                          claimed_at=at, **fields)


# --- consent, as it is at claim time -----------------------------------------------------------

def test_a_member_who_opted_out_after_the_snapshot_is_skipped_at_claim():
    member = consenting_member()
    mailing = _sending(MailingFactory())
    consent_record(member=member, channel="email", action="withdraw", source="unsubscribe_link")

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert claimed == []
    assert (message.status, message.skip_reason) == ("skipped", "opted_out")


def test_an_address_suppressed_after_the_snapshot_is_skipped_at_claim():
    member = consenting_member()
    mailing = _sending(MailingFactory())
    suppression_add(channel="email", address=member.email, reason="complaint")

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "suppressed")


def test_a_member_who_left_the_mailings_category_after_the_snapshot_is_skipped_at_claim():
    news = SubscriptionCategoryFactory(code="news")
    member = consenting_member()
    mailing = _sending(MailingFactory(category=news))
    consent_record(member=member, channel="email", category=news, action="withdraw",
                   source="account_page")

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "not_subscribed_to_category")


def test_a_member_erased_after_the_snapshot_is_skipped_at_claim():
    member = consenting_member()
    mailing = _sending(MailingFactory())
    member_erase(member=member, by=None, reason="erasure request by email")

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "inactive")


def test_members_whose_consent_still_holds_are_claimed_beside_one_who_withdrew():
    keeps, leaves = consenting_member(), consenting_member()
    mailing = _sending(MailingFactory())
    consent_record(member=leaves, channel="email", action="withdraw", source="app")

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, keeps).pk]
    assert _message(mailing, keeps).status == "sending"


# --- frequency caps ----------------------------------------------------------------------------

def test_a_member_at_the_cap_is_skipped_with_frequency_cap():
    FrequencyCapFactory(max_messages=2, period_length=7)
    member = consenting_member()
    for days in (1, 2):
        _sent_before(member, at=NOON - timedelta(days=days))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert claimed == []
    assert (message.status, message.skip_reason) == ("skipped", "frequency_cap")


def test_a_member_below_the_cap_is_claimed():
    FrequencyCapFactory(max_messages=2, period_length=7)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(days=1))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_messages_sent_before_the_period_do_not_count():
    FrequencyCapFactory(max_messages=1, period_length=24, period_unit="hours")
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=25))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_transactional_messages_do_not_count_toward_the_cap():
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=1), mailing=None)
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


@pytest.mark.parametrize("status", ["failed", "skipped", "cancelled", "queued"])
def test_messages_that_never_went_out_do_not_count_toward_the_cap(status):
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    MessageFactory(member=member, status=status, claimed_at=NOON - timedelta(hours=1))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_a_message_another_batch_is_sending_counts_toward_the_cap():
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    MessageFactory(member=member, status=Status.SENDING, claimed_at=NOON - timedelta(seconds=5))
    mailing = _sending(MailingFactory())

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert _message(mailing, member).skip_reason == "frequency_cap"


def test_a_channel_cap_does_not_count_other_channels():
    FrequencyCapFactory(channel="email", max_messages=1)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=1), channel="sms")
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_an_overall_cap_counts_every_channel():
    FrequencyCapFactory(channel="", max_messages=1)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=1), channel="sms")
    mailing = _sending(MailingFactory())

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert _message(mailing, member).skip_reason == "frequency_cap"


def test_an_inactive_cap_does_not_apply():
    FrequencyCapFactory(max_messages=1, is_active=False)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=1))
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    assert claimed == [_message(mailing, member).pk]


def test_a_deferring_mailing_holds_a_capped_message_until_the_oldest_counted_one_leaves():
    FrequencyCapFactory(max_messages=2, period_length=7)
    member = consenting_member()
    oldest = NOON - timedelta(days=5)
    _sent_before(member, at=oldest)
    _sent_before(member, at=NOON - timedelta(days=1))
    mailing = _sending(MailingFactory(defer_capped=True))

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert claimed == []
    assert (message.status, message.held_for, message.attempts) == ("queued", "frequency_cap", 0)
    assert message.not_before == oldest + timedelta(days=7)


def test_a_deferred_message_is_claimed_once_its_slot_comes():
    FrequencyCapFactory(max_messages=1, period_length=1)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(hours=2))
    mailing = _sending(MailingFactory(defer_capped=True))
    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)
    slot = _message(mailing, member).not_before

    before = messages_claim(mailing_id=mailing.pk, limit=10, now=slot - timedelta(minutes=1))
    after = messages_claim(mailing_id=mailing.pk, limit=10, now=slot)

    assert (before, after) == ([], [_message(mailing, member).pk])


def test_a_deferral_that_would_end_after_the_lifetime_is_skipped_at_once():
    FrequencyCapFactory(max_messages=1, period_length=7)
    member = consenting_member()
    _sent_before(member, at=NOON - timedelta(days=1))
    mailing = _sending(MailingFactory(defer_capped=True, message_lifetime=timedelta(days=2)))
    _started(mailing, at=NOON)

    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "frequency_cap")


def test_a_waiting_message_of_a_higher_priority_mailing_takes_the_last_slot():
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    urgent = _sending(MailingFactory(priority=10))
    routine = _sending(MailingFactory(priority=0))

    routine_claim = messages_claim(mailing_id=routine.pk, limit=10, now=NOON)
    urgent_claim = messages_claim(mailing_id=urgent.pk, limit=10, now=NOON)

    assert routine_claim == []
    assert _message(routine, member).skip_reason == "frequency_cap"
    assert urgent_claim == [_message(urgent, member).pk]


def test_a_waiting_message_of_an_equal_priority_mailing_does_not_take_the_slot():
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    _sending(MailingFactory(priority=0))
    first = _sending(MailingFactory(priority=0))

    claimed = messages_claim(mailing_id=first.pk, limit=10, now=NOON)

    assert claimed == [_message(first, member).pk]


def test_a_message_just_claimed_on_one_channel_counts_for_a_claim_on_another():
    FrequencyCapFactory(channel="", max_messages=2)
    member = consenting_member()
    consent_record(member=member, channel="sms", action="grant", source="import")
    _sent_before(member, at=NOON - timedelta(hours=3))
    email = _sending(MailingFactory())
    sms = _sending(sms_mailing())

    first = messages_claim(mailing_id=email.pk, limit=10, now=NOON)
    second = messages_claim(mailing_id=sms.pk, limit=10, now=NOON)

    assert first == [_message(email, member).pk]
    assert second == []
    assert _message(sms, member).skip_reason == "frequency_cap"


@pytest.mark.django_db(transaction=True)
def test_a_claim_for_a_member_waits_for_a_concurrent_claim_and_then_counts_its_message():
    # given: one slot left for a member who is in two sending mailings
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    first = _sending(MailingFactory())
    second = _sending(MailingFactory())
    outcome: dict[str, list[int]] = {}

    def claim_second() -> None:
        try:
            outcome["second"] = messages_claim(mailing_id=second.pk, limit=10, now=NOON)
        finally:
            connections.close_all()

    # when: the second claim starts while the first has claimed but not yet committed
    with transaction.atomic():
        outcome["first"] = messages_claim(mailing_id=first.pk, limit=10, now=NOON)
        other = threading.Thread(target=claim_second)
        other.start()
        other.join(timeout=1.0)
        waited = other.is_alive()
    other.join(timeout=10)

    # then: it waited on the member's lock and, once it could count the first, skipped
    assert waited
    assert outcome["first"] == [_message(first, member).pk]
    assert outcome["second"] == []
    assert _message(second, member).skip_reason == "frequency_cap"


# --- quiet hours -------------------------------------------------------------------------------

def test_sms_and_push_have_quiet_hours_from_21_to_8_by_default():
    rows = QuietHours.objects.filter(is_active=True).order_by("channel")

    assert [(q.channel, q.starts_at, q.ends_at) for q in rows] == [
        ("push", time(21), time(8)), ("sms", time(21), time(8))]


def test_an_sms_inside_quiet_hours_is_held_until_the_window_opens_in_the_members_zone():
    member = consenting_member(channel="sms", timezone="Europe/Berlin")
    mailing = _sending(sms_mailing())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    message = _message(mailing, member)
    assert claimed == []
    assert (message.status, message.held_for) == ("queued", "quiet_hours")
    # 08:00 the next morning in Berlin (CET, UTC+1)
    assert message.not_before == datetime(2026, 3, 11, 7, 0, tzinfo=UTC)


def test_a_held_message_costs_no_attempt():
    member = consenting_member(channel="sms")
    mailing = _sending(sms_mailing())

    messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    assert _message(mailing, member).attempts == 0


def test_an_sms_to_a_member_for_whom_it_is_day_is_claimed_while_it_is_night_in_berlin():
    member = consenting_member(channel="sms", timezone="Asia/Tokyo")
    berlin_2am = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    mailing = _sending(sms_mailing())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=berlin_2am)

    assert claimed == [_message(mailing, member).pk]


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons"])
def test_a_blank_or_unknown_time_zone_is_read_as_the_programs(settings, zone):
    settings.TIME_ZONE = "America/New_York"
    member = consenting_member(channel="sms", timezone=zone)
    mailing = _sending(sms_mailing())
    # 22:00 in New York (EDT, UTC-4), 03:00 in Berlin
    ny_night = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)

    messages_claim(mailing_id=mailing.pk, limit=10, now=ny_night)

    assert _message(mailing, member).not_before == datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def test_email_is_not_held_by_the_default_quiet_hours():
    member = consenting_member()
    mailing = _sending(MailingFactory())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    assert claimed == [_message(mailing, member).pk]


def test_inactive_quiet_hours_hold_nothing():
    QuietHours.objects.filter(channel="sms").update(is_active=False)
    member = consenting_member(channel="sms")
    mailing = _sending(sms_mailing())

    claimed = messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    assert claimed == [_message(mailing, member).pk]


def test_a_held_message_is_claimed_once_the_window_opens_and_not_before():
    member = consenting_member(channel="sms")
    mailing = _sending(sms_mailing())
    messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)
    opens = _message(mailing, member).not_before

    early = messages_claim(mailing_id=mailing.pk, limit=10, now=opens - timedelta(seconds=1))
    on_time = messages_claim(mailing_id=mailing.pk, limit=10, now=opens)

    assert (early, on_time) == ([], [_message(mailing, member).pk])


def test_a_quiet_window_that_opens_after_the_lifetime_skips_with_quiet_hours_expired():
    member = consenting_member(channel="sms")
    mailing = _sending(sms_mailing(message_lifetime=timedelta(hours=1)))
    # 23:00 in Berlin, ten minutes after the start: the window opens long after the lifetime
    berlin_23h = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
    _started(mailing, at=berlin_23h - timedelta(minutes=10))

    messages_claim(mailing_id=mailing.pk, limit=10, now=berlin_23h)

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "quiet_hours_expired")


def test_a_quiet_window_within_one_day_holds_only_inside_it():
    quiet = QuietHours(channel="sms", starts_at=time(13), ends_at=time(15))

    inside = quiet_window_opens(quiet=quiet, zone="UTC",
                                now=datetime(2026, 3, 10, 14, 0, tzinfo=UTC))
    after = quiet_window_opens(quiet=quiet, zone="UTC",
                               now=datetime(2026, 3, 10, 15, 0, tzinfo=UTC))

    assert inside == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert after is None


def test_a_window_opening_after_the_spring_clock_change_is_read_in_the_new_offset():
    quiet = QuietHours(channel="sms", starts_at=time(21), ends_at=time(8))

    # 22:00 CET on Saturday 28 March 2026; Berlin moves to CEST (UTC+2) that night
    opens = quiet_window_opens(quiet=quiet, zone="Europe/Berlin",
                               now=datetime(2026, 3, 28, 21, 0, tzinfo=UTC))

    assert opens == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


# --- history and cost --------------------------------------------------------------------------

def test_skips_and_holds_are_recorded_in_the_message_history_with_their_reason():
    FrequencyCapFactory(max_messages=1)
    capped, night_owl = consenting_member(channel="sms"), consenting_member(channel="sms")
    _sent_before(capped, at=BERLIN_NIGHT - timedelta(hours=1), channel="sms")
    mailing = _sending(sms_mailing())

    messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    changes = {c.message_id: (c.status, c.code, c.source)
               for c in MessageStatusChange.objects.filter(message__mailing=mailing)}
    assert changes == {
        _message(mailing, capped).pk: ("skipped", "frequency_cap", "compliance"),
        _message(mailing, night_owl).pk: ("queued", "quiet_hours", "compliance"),
    }


def test_screening_costs_the_same_number_of_queries_whatever_the_batch_size():
    FrequencyCapFactory(max_messages=1)
    FrequencyCapFactory(channel="sms", max_messages=5)

    def queries_for(members: int) -> int:
        people = [consenting_member(channel="sms") for _ in range(members)]
        for person in people[::2]:
            _sent_before(person, at=BERLIN_NIGHT - timedelta(hours=1), channel="sms")
        mailing = _sending(sms_mailing(category=SubscriptionCategoryFactory()))
        with CaptureQueriesContext(connection) as queries:
            messages_claim(mailing_id=mailing.pk, limit=100, now=BERLIN_NIGHT)
        return len(queries)

    assert queries_for(2) == queries_for(30)


# --- message lifetime --------------------------------------------------------------------------

def _started(mailing: Mailing, *, at: datetime) -> None:
    """Move the mailing's start to `at`, so its lifetime can be read against a frozen clock."""
    Mailing.objects.filter(pk=mailing.pk).update(started_at=at)
    mailing.refresh_from_db()


def _ended(mailing: Mailing) -> datetime:
    return mailing.started_at + mailing.message_lifetime + timedelta(seconds=1)


def test_queued_messages_still_waiting_when_the_lifetime_ends_expire():
    member = consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=6)))

    outcome = messages_expire(now=_ended(mailing))

    assert outcome["expired"] == 1
    assert _message(mailing, member).status == "expired"


def test_nothing_expires_before_the_lifetime_ends():
    member = consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=6)))

    messages_expire(now=mailing.started_at + timedelta(hours=5))

    assert _message(mailing, member).status == "queued"


def test_a_message_held_by_quiet_hours_when_the_lifetime_ends_is_skipped_quiet_hours_expired():
    member = consenting_member(channel="sms")
    mailing = _sending(sms_mailing(message_lifetime=timedelta(days=1)))
    _started(mailing, at=BERLIN_NIGHT - timedelta(hours=1))
    messages_claim(mailing_id=mailing.pk, limit=10, now=BERLIN_NIGHT)

    messages_expire(now=_ended(mailing))

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "quiet_hours_expired")


def test_a_message_deferred_by_a_cap_when_the_lifetime_ends_is_skipped_frequency_cap():
    member = consenting_member()
    FrequencyCapFactory(max_messages=1, period_length=1)
    _sent_before(member, at=NOON - timedelta(hours=1))
    mailing = _sending(MailingFactory(defer_capped=True, message_lifetime=timedelta(days=3)))
    _started(mailing, at=NOON)
    messages_claim(mailing_id=mailing.pk, limit=10, now=NOON)

    messages_expire(now=_ended(mailing))

    message = _message(mailing, member)
    assert (message.status, message.skip_reason) == ("skipped", "frequency_cap")


def test_sent_messages_not_delivered_within_the_lifetime_expire_with_their_history():
    member = consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=1)))
    Message.objects.filter(mailing=mailing).update(status=Status.SENT,
                                                   sent_at=mailing.started_at)

    outcome = messages_expire(now=_ended(mailing))

    message = _message(mailing, member)
    assert outcome["sent_expired"] == 1
    assert message.status == "expired"
    change = MessageStatusChange.objects.get(message=message)
    assert (change.status, change.code, change.source) == ("expired", "lifetime", "sweeper")


def test_delivered_messages_are_not_expired():
    member = consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=1)))
    message = _message(mailing, member)
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, sent_at=mailing.started_at)
    message_statuses_apply(changes=[StatusChange(message.pk, Status.DELIVERED,
                                                 mailing.started_at)], source="receipt")

    messages_expire(now=_ended(mailing))

    assert _message(mailing, member).status == "delivered"


def test_expiring_the_last_queued_messages_completes_a_sending_mailing():
    consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=1)))

    messages_expire(now=_ended(mailing))

    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED


def test_a_batch_after_the_lifetime_sends_nothing_and_expires_what_is_left(smtp_peer):
    member = consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(minutes=30),
                                      gateway__settings=smtp_peer.gateway_settings()))

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10, now=_ended(mailing))

    assert outcome["claimed"] == 0
    assert smtp_peer.received == []
    assert _message(mailing, member).status == "expired"


def test_a_finished_mailing_is_swept_for_the_last_time_when_nothing_is_left():
    consenting_member()
    mailing = _sending(MailingFactory(message_lifetime=timedelta(hours=1)))

    messages_expire(now=_ended(mailing))

    mailing.refresh_from_db()
    assert mailing.messages_expired_at == _ended(mailing)


# --- the admin and the API ---------------------------------------------------------------------

def test_a_frequency_cap_is_created_in_the_admin(marketer_client):
    response = marketer_client.post(reverse("admin:communications_frequencycap_add"), {
        "channel": "sms", "max_messages": 3, "period_length": 7, "period_unit": "days",
        "is_active": "on"})

    assert response.status_code == 302
    cap = FrequencyCap.objects.get()
    assert (cap.channel, cap.max_messages, cap.period) == ("sms", 3, timedelta(days=7))


def test_quiet_hours_are_changed_in_the_admin(marketer_client):
    sms = QuietHours.objects.get(channel="sms")

    response = marketer_client.post(
        reverse("admin:communications_quiethours_change", args=[sms.pk]),
        {"channel": "sms", "starts_at": "20:00", "ends_at": "09:00", "is_active": "on"})

    assert response.status_code == 302
    sms.refresh_from_db()
    assert (sms.starts_at, sms.ends_at) == (time(20), time(9))


def test_a_mailings_priority_deferral_and_lifetime_are_set_in_the_admin(marketer_client):
    mailing = MailingFactory(gateway=None)

    marketer_client.post(reverse("admin:communications_mailing_change", args=[mailing.pk]), {
        "name": mailing.name, "campaign": mailing.campaign_id,
        "target_group": mailing.target_group_id, "template": mailing.template_id,
        "gateway": "", "scheduled_at_0": "", "scheduled_at_1": "", "priority": "5",
        "defer_capped": "on", "message_lifetime": "2 00:00:00", "_save": "1",
        **ADMIN_NO_CASCADE_STEPS})

    mailing.refresh_from_db()
    assert (mailing.priority, mailing.defer_capped, mailing.message_lifetime) == (
        5, True, timedelta(days=2))


def test_the_api_shows_a_mailings_priority_deferral_and_lifetime(marketer_client):
    mailing = MailingFactory(priority=3, defer_capped=True, message_lifetime=timedelta(hours=6))

    row = marketer_client.get(f"/api/v1/mailings/{mailing.pk}/").json()

    assert (row["priority"], row["defer_capped"], row["message_lifetime"]) == (
        3, True, "06:00:00")
