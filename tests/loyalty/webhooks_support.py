"""What the webhook tests share: a receiver on loopback and events recorded as the ingest does."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import Event
from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription
from loyalty.webhooks.services import subscription_create
from tests.peers.webhook_receiver import WebhookReceiverPeer


@pytest.fixture
def receiver():
    peer = WebhookReceiverPeer().start()
    yield peer
    peer.stop()


def subscribe(receiver: WebhookReceiverPeer, **fields) -> WebhookSubscription:
    """A subscription to the receiver, whose secret the receiver then knows."""
    subscription, secret = subscription_create(url=receiver.hook_url, **fields)
    receiver.secrets.append(secret)
    return subscription


def subscription_prove(subscription: WebhookSubscription) -> WebhookSubscription:
    """As if a delivery to it had succeeded: whole batches go out to it at once."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        healthy_since=timezone.now() - timedelta(hours=1))
    subscription.refresh_from_db()
    return subscription


def event_record(member, type_: str = "ORDER_PLACED", **payload) -> Event:
    return Event.objects.create(id=uuid.uuid4(), type=type_, occurred_at=timezone.now(),
                                member=member, payload=payload or {"order": "A-1"})


def delivery_make_due(delivery: WebhookDelivery) -> None:
    """As if the retry's wait had passed (and its subscription's wait for a probe's retry)."""
    past = timezone.now() - timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=past)
    WebhookSubscription.objects.filter(pk=delivery.subscription_id, probe_at__isnull=False
                                       ).update(probe_at=past)
