"""Trigger mailings answering events of the loyalty event log: matching (type, payload
conditions, target group), exactly once per event, delays and cancelling events, and the
mailings' own consent and frequency rules at claim time."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.utils import timezone

from communications.models import Mailing, Message, MessageStatusChange, Trigger
from communications.services import mailing_pause, mailing_resume, message_batch_dispatch
from communications.services.mailings import mailing_schedule
from communications.services.triggers import trigger_activate, trigger_events_read
from loyalty.event_log import CLOCK_MARGIN
from loyalty.integration.events import event_new, events_append, events_ingest
from loyalty.integration.keys import api_key_create
from members.services.consents import consent_record
from tests.campaigns.factories import TargetGroupFactory
from tests.communications.factories import (
    FrequencyCapFactory,
    GatewayFactory,
    MailingFactory,
    MessageFactory,
)
from tests.conftest import wait_until
from tests.members.factories import consenting_member

Status = Message.Status


def trigger_mailing(*, gateway=None, target_group=None, **trigger_fields) -> Mailing:
    """A live trigger mailing (activated now) on email, answering ORDER_PLACED unless told."""
    mailing = MailingFactory(kind=Mailing.Kind.TRIGGER, target_group=target_group,
                             gateway=gateway or GatewayFactory())
    Trigger.objects.create(mailing=mailing,
                           **{"event_type": "ORDER_PLACED", **trigger_fields})
    return trigger_activate(mailing=mailing)


def order_placed(member, *, order_id: str = "A-1", total: str = "80.00",
                 occurred_at: datetime | None = None, type: str = "ORDER_PLACED",
                 **payload) -> None:
    event = {"type": type, "member": member.external_id,
             "payload": {"order_id": order_id, "total": total, **payload}}
    if occurred_at is not None:
        event["occurred_at"] = occurred_at.isoformat()
    events_ingest(raw_events=[event])


def messages_of(mailing: Mailing) -> list[Message]:
    return list(Message.objects.filter(mailing=mailing).order_by("pk"))


# --- the real pipeline ----------------------------------------------------------------------

@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_order_placed_through_the_api_reaches_the_smtp_peer_once_even_when_read_again(
    smtp_peer, celery_worker_process
):
    # given
    member = consenting_member(first_name="Ann", last_name="Smith")
    mailing = trigger_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))
    _, key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    # when: the shop posts the event
    response = Client().post("/api/v1/integration/events/", json.dumps({
        "type": "ORDER_PLACED", "member": member.external_id,
        "payload": {"order_id": "A-1", "total": "80.00"}}),
        content_type="application/json", headers={"Authorization": f"Api-Key {key}"})
    assert response.status_code == 201
    wait_until(lambda: Message.objects.filter(mailing=mailing, status=Status.SENT).exists(),
               timeout=60, what="the triggered message to be sent")

    # and the event is read again from the start of the log
    Trigger.objects.filter(mailing=mailing).update(read_until=mailing.started_at)
    again = trigger_events_read()

    # then
    assert again == {}
    message = Message.objects.get(mailing=mailing)
    assert str(message.event_id) == response.json()["id"]
    assert [r.rcpt_tos for r in smtp_peer.received] == [[member.email]]
    assert smtp_peer.received[0].message["Subject"] == "Hello Ann"
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING


# --- matching -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_event_read_twice_makes_one_message():
    member = consenting_member()
    mailing = trigger_mailing()
    order_placed(member)

    first = trigger_events_read()
    Trigger.objects.filter(mailing=mailing).update(read_until=mailing.started_at)
    second = trigger_events_read()

    assert first == {mailing.pk: {"queued": 1, "skipped": 0, "cancelled": 0}}
    assert second == {}
    assert [(m.member_id, m.status) for m in messages_of(mailing)] == [(member.pk, "queued")]


@pytest.mark.django_db
def test_each_event_of_a_member_gets_its_own_message():
    member = consenting_member()
    mailing = trigger_mailing()
    order_placed(member, order_id="A-1")
    order_placed(member, order_id="A-2")

    trigger_events_read()

    assert len(messages_of(mailing)) == 2


@pytest.mark.django_db
def test_a_trigger_on_message_statuses_does_not_answer_its_own_messages():
    member = consenting_member()
    mailing = trigger_mailing(event_type="MESSAGE_DELIVERED")
    other = MailingFactory()
    message_delivered = [
        event_new(type="MESSAGE_DELIVERED", member_id=member.pk,
                  payload={"message_id": 1, "mailing_id": pk, "channel": "email", "code": ""})
        for pk in (mailing.pk, other.pk)]
    with transaction.atomic():
        events_append(message_delivered)

    trigger_events_read()

    assert len(messages_of(mailing)) == 1  # for the other mailing's delivery only


@pytest.mark.django_db
def test_events_of_another_type_make_no_message():
    member = consenting_member()
    mailing = trigger_mailing()
    order_placed(member, type="CART_ABANDONED")

    trigger_events_read()

    assert messages_of(mailing) == []


@pytest.mark.django_db
def test_events_recorded_before_the_activation_are_not_answered():
    member = consenting_member()
    order_placed(member)
    mailing = trigger_mailing()

    trigger_events_read()

    assert messages_of(mailing) == []


@pytest.mark.django_db
def test_payload_conditions_keep_only_matching_events():
    small, large = consenting_member(), consenting_member()
    mailing = trigger_mailing(conditions=[{"path": "total", "op": "gte", "value": 50}])
    order_placed(small, total="12.50")
    order_placed(large, total="80.00")

    trigger_events_read()

    assert [m.member_id for m in messages_of(mailing)] == [large.pk]


@pytest.mark.parametrize(("condition", "matches"), [
    ({"path": "store.city", "op": "eq", "value": "Riga"}, {"riga"}),
    ({"path": "store.city", "op": "ne", "value": "Riga"}, {"tallinn", "none"}),
    ({"path": "store.city", "op": "in", "value": ["Riga", "Tallinn"]}, {"riga", "tallinn"}),
    ({"path": "store.city", "op": "exists", "value": False}, {"none"}),
    ({"path": "items", "op": "lt", "value": 3}, {"riga"}),
    ({"path": "items", "op": "eq", "value": 5}, {"tallinn"}),
    ({"path": "first", "op": "eq", "value": True}, {"tallinn"}),
])
@pytest.mark.django_db
def test_condition_op_selects_the_matching_payloads(condition, matches):
    members = {name: consenting_member(first_name=name) for name in ("riga", "tallinn", "none")}
    mailing = trigger_mailing(conditions=[condition])
    order_placed(members["riga"], store={"city": "Riga"}, items="2")
    order_placed(members["tallinn"], store={"city": "Tallinn"}, items=5, first=True)
    order_placed(members["none"], items="many")

    trigger_events_read()

    assert {m.member.first_name for m in messages_of(mailing)} == matches


@pytest.mark.django_db
def test_only_members_of_the_target_group_get_the_message():
    german, latvian = consenting_member(language="de"), consenting_member(language="lv")
    group = TargetGroupFactory(rules=[{"field": "language", "op": "eq", "value": "de"}])
    mailing = trigger_mailing(target_group=group)
    order_placed(german, order_id="A-1")
    order_placed(latvian, order_id="A-2")

    trigger_events_read()

    assert [m.member_id for m in messages_of(mailing)] == [german.pk]


@pytest.mark.django_db
def test_a_member_without_consent_gets_a_skipped_opted_out_message():
    member = consenting_member()
    consent_record(member=member, channel="email", action="withdraw", source="app")
    mailing = trigger_mailing()
    order_placed(member)

    trigger_events_read()

    assert [(m.status, m.skip_reason) for m in messages_of(mailing)] == [
        ("skipped", "opted_out")]


# --- delays and cancelling events -------------------------------------------------------------

@pytest.mark.django_db
def test_a_delayed_message_is_held_until_the_delay_has_passed(smtp_peer):
    member = consenting_member()
    mailing = trigger_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
                              delay=timedelta(hours=2))
    placed = timezone.now().replace(microsecond=0)
    order_placed(member, occurred_at=placed)
    trigger_events_read()
    message = Message.objects.get(mailing=mailing)
    assert message.not_before == placed + timedelta(hours=2)

    early = message_batch_dispatch(mailing_id=mailing.pk, now=placed + timedelta(minutes=119))
    assert early == {"claimed": 0}
    assert smtp_peer.received == []

    due = message_batch_dispatch(mailing_id=mailing.pk, now=placed + timedelta(hours=2))
    assert due["sent"] == 1
    assert [r.rcpt_tos for r in smtp_peer.received] == [[member.email]]


@pytest.mark.django_db
def test_an_event_posted_after_its_delay_passed_is_due_at_once():
    member = consenting_member()
    mailing = trigger_mailing(delay=timedelta(hours=2))
    order_placed(member, occurred_at=timezone.now() - timedelta(hours=3))

    trigger_events_read()

    assert Message.objects.get(mailing=mailing).not_before is None


def _refund_trigger() -> Mailing:
    return trigger_mailing(delay=timedelta(hours=2), cancel_on=["ORDER_REFUNDED"],
                           cancel_match="order_id")


@pytest.mark.django_db
def test_a_refund_within_the_delay_read_in_a_later_pass_cancels_the_message():
    member = consenting_member()
    mailing = _refund_trigger()
    placed = timezone.now() - timedelta(minutes=30)
    order_placed(member, order_id="A-1", occurred_at=placed)
    trigger_events_read()

    order_placed(member, order_id="A-1", type="ORDER_REFUNDED")
    outcome = trigger_events_read()

    message = Message.objects.get(mailing=mailing)
    assert outcome == {mailing.pk: {"queued": 0, "skipped": 0, "cancelled": 1}}
    assert (message.status, message.skip_reason) == ("skipped", "trigger_cancelled")
    assert MessageStatusChange.objects.filter(
        message=message, status="skipped", source="trigger").exists()


@pytest.mark.parametrize(("refunded", "refunded_after", "status"), [
    ("A-1", timedelta(minutes=30), "skipped"),  # the order's own refund, within the delay
    ("B-7", timedelta(minutes=30), "queued"),  # another order's refund
    ("A-1", timedelta(hours=2, minutes=1), "queued"),  # after the delay ended
])
@pytest.mark.django_db
def test_a_refund_read_with_its_order_cancels_only_the_same_order_within_the_delay(
    refunded, refunded_after, status
):
    member = consenting_member()
    mailing = _refund_trigger()
    placed = timezone.now() - timedelta(hours=3)
    order_placed(member, order_id="A-1", occurred_at=placed)
    order_placed(member, order_id=refunded, type="ORDER_REFUNDED",
                 occurred_at=placed + refunded_after)

    trigger_events_read()

    message = Message.objects.get(mailing=mailing)
    assert message.status == status
    assert message.skip_reason == ("trigger_cancelled" if status == "skipped" else "")


# --- the mailings' rules at claim time ---------------------------------------------------------

@pytest.mark.django_db
def test_consent_withdrawn_during_the_delay_skips_the_message_opted_out():
    member = consenting_member()
    mailing = trigger_mailing(delay=timedelta(hours=2))
    placed = timezone.now()
    order_placed(member, occurred_at=placed)
    trigger_events_read()

    consent_record(member=member, channel="email", action="withdraw", source="app")
    message_batch_dispatch(mailing_id=mailing.pk, now=placed + timedelta(hours=2))

    message = Message.objects.get(mailing=mailing)
    assert (message.status, message.skip_reason) == ("skipped", "opted_out")


@pytest.mark.django_db
def test_a_member_at_the_frequency_cap_is_skipped_with_frequency_cap():
    FrequencyCapFactory(max_messages=1, period_length=1)
    member = consenting_member()
    now = timezone.now()
    MessageFactory(member=member, status=Status.SENT, sent_at=now - timedelta(hours=1),
                   claimed_at=now - timedelta(hours=1))
    mailing = trigger_mailing()
    order_placed(member)
    trigger_events_read()

    claimed = message_batch_dispatch(mailing_id=mailing.pk, now=now)

    message = Message.objects.get(mailing=mailing)
    assert claimed["claimed"] == 0
    assert (message.status, message.skip_reason) == ("skipped", "frequency_cap")


# --- the trigger mailing's life ------------------------------------------------------------------

@pytest.mark.django_db
def test_a_paused_trigger_ignores_the_events_of_the_pause():
    member = consenting_member()
    mailing = trigger_mailing()
    mailing_pause(mailing=mailing)
    order_placed(member)
    # The reader's position stays a second behind the clock (event_log.CLOCK_MARGIN).
    time.sleep(CLOCK_MARGIN.total_seconds() + 0.2)
    trigger_events_read()

    mailing_resume(mailing=mailing)
    trigger_events_read()

    assert messages_of(mailing) == []


@pytest.mark.django_db
def test_a_trigger_mailing_with_nothing_to_send_stays_sending(smtp_peer):
    mailing = trigger_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))

    message_batch_dispatch(mailing_id=mailing.pk)

    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING


@pytest.mark.django_db
def test_a_trigger_mailing_cannot_be_scheduled():
    mailing = MailingFactory(kind=Mailing.Kind.TRIGGER)
    Trigger.objects.create(mailing=mailing, event_type="ORDER_PLACED")

    with pytest.raises(ValidationError) as refused:
        mailing_schedule(mailing=mailing)

    assert "activated, not scheduled" in str(refused.value)


@pytest.mark.django_db
def test_activation_refuses_an_unknown_event_type():
    mailing = MailingFactory(kind=Mailing.Kind.TRIGGER, target_group=None)
    Trigger.objects.create(mailing=mailing, event_type="NO_SUCH_EVENT")

    with pytest.raises(ValidationError) as refused:
        trigger_activate(mailing=mailing)

    assert "NO_SUCH_EVENT" in str(refused.value)
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.DRAFT
