"""Receipts for the status tests: a message sent through a gateway, and provider receipts
stored and applied as a webhook call and the apply task would."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from communications.gateways import Receipt
from communications.models import Message
from communications.services.statuses import receipts_apply, receipts_record
from tests.communications.factories import MessageFactory

T0 = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)


def sent_message(gateway, provider_id: str, **fields) -> Message:
    return MessageFactory(gateway=gateway, provider_id=provider_id, status=Message.Status.SENT,
                          sent_at=T0, **fields)


def receive(gateway, *receipts: tuple[str, str, dt.datetime]) -> None:
    receipts_record(gateway_id=gateway.pk, receipts=[
        Receipt(provider_id=provider_id, status=status, occurred_at=at)
        for provider_id, status, at in receipts])
    receipts_apply()
