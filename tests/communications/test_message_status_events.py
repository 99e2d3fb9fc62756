"""Message statuses in the event log: a mailing's message delivered, opened or clicked becomes
MESSAGE_DELIVERED / OPENED / CLICKED, written with the status change, once per change made."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from communications.models import Message
from communications.services.statuses import (
    StatusChange,
    message_statuses_apply,
)
from loyalty.models import Event
from tests.communications.factories import GatewayFactory, MessageFactory
from tests.communications.receipts import T0, receive, sent_message

pytestmark = pytest.mark.django_db
Status = Message.Status


def _events() -> list[tuple[str, int | None, dict]]:
    return list(Event.objects.order_by("occurred_at", "type")
                .values_list("type", "member_id", "payload"))


def test_a_delivery_receipt_records_message_delivered_for_the_member():
    gateway = GatewayFactory()
    message = sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "delivered", T0 + dt.timedelta(seconds=5)))

    event = Event.objects.get()
    assert (event.type, event.member_id, event.occurred_at) == (
        "MESSAGE_DELIVERED", message.member_id, T0 + dt.timedelta(seconds=5))
    assert event.payload == {"message_id": message.pk, "mailing_id": message.mailing_id,
                             "channel": "email", "code": ""}


def test_a_click_reported_with_its_delivery_records_delivered_opened_and_clicked_in_order():
    gateway = GatewayFactory()
    sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "clicked", T0 + dt.timedelta(minutes=3)),
             ("p-1", "delivered", T0 + dt.timedelta(minutes=1)))

    assert [event_type for event_type, _, _ in _events()] == [
        "MESSAGE_DELIVERED", "MESSAGE_CLICKED"]


def test_an_open_records_message_opened():
    message = MessageFactory(status=Status.DELIVERED, sent_at=T0)

    message_statuses_apply(changes=[StatusChange(message.pk, Status.OPENED, T0)],
                           source="member")

    assert [event_type for event_type, _, _ in _events()] == ["MESSAGE_OPENED"]


def test_a_repeated_receipt_records_no_second_event():
    gateway = GatewayFactory()
    sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "delivered", T0))
    receive(gateway, ("p-2", "delivered", T0), ("p-1", "delivered", T0))

    assert len(_events()) == 1


def test_statuses_other_than_delivered_opened_and_clicked_record_no_event():
    gateway = GatewayFactory()
    sent_message(gateway, "p-1")
    sent_message(gateway, "p-2")

    receive(gateway, ("p-1", "undelivered", T0), ("p-2", "bounced", T0))

    assert _events() == []


def test_test_sends_and_transactional_messages_record_no_event():
    gateway = GatewayFactory()
    sent_message(gateway, "p-test", is_test=True)
    sent_message(gateway, "p-code", mailing=None, content={"kind": "sign_in_code"})

    receive(gateway, ("p-test", "delivered", T0), ("p-code", "delivered", T0))

    assert _events() == []


def test_the_event_rolls_back_with_the_status_change():
    message = MessageFactory(status=Status.SENT, sent_at=T0)
    with pytest.raises(RuntimeError), transaction.atomic():
        message_statuses_apply(changes=[StatusChange(message.pk, Status.DELIVERED, T0)],
                               source="receipt")
        raise RuntimeError("the caller's transaction fails")

    assert _events() == []
    message.refresh_from_db()
    assert message.status == Status.SENT
