"""Webhooks through a real Celery worker on Redis: the nudge after commit, and a worker killed
in the middle of a call."""

from __future__ import annotations

import psutil
import pytest
from django.db import transaction

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.models import WebhookDelivery
from loyalty.webhooks.relay import events_relay_nudge
from tests.conftest import wait_until
from tests.loyalty.webhooks_support import event_record, receiver, subscribe  # noqa: F401
from tests.members.factories import MemberFactory

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


@pytest.fixture
def worker_settings(monkeypatch, settings):
    monkeypatch.setenv("ENGAGE_WEBHOOK_TIMEOUT", "10")
    monkeypatch.setenv("ENGAGE_WEBHOOK_LEASE_MARGIN", "1")
    settings.ENGAGE_WEBHOOK_LEASE_MARGIN = 1


@pytest.fixture
def worker(worker_settings, celery_worker_process):
    return celery_worker_process


def test_event_committed_with_a_nudge_reaches_the_receiver(receiver, worker):  # noqa: F811
    subscribe(receiver)
    with transaction.atomic():
        event = event_record(MemberFactory())
        transaction.on_commit(events_relay_nudge)

    wait_until(lambda: len(receiver.verified_calls()) == 1, timeout=60,
               what="the webhook at the receiver")
    assert receiver.calls[0].headers["webhook-id"] == str(event.id)


def test_delivery_of_a_worker_killed_mid_call_is_sent_by_another_after_the_lease(
        receiver, worker):  # noqa: F811
    # given: the receiver holds the first call while the worker is killed
    receiver.script["stall"] = 3.0
    subscribe(receiver)
    with transaction.atomic():
        event_record(MemberFactory())
        transaction.on_commit(events_relay_nudge)
    wait_until(lambda: len(receiver.calls) == 1, timeout=60, what="the first call")
    # The worker and its embedded beat process, which would hold the output pipe open.
    for process in [*psutil.Process(worker.pid).children(recursive=True),
                    psutil.Process(worker.pid)]:
        process.kill()
    worker.wait(10)
    receiver.script["stall"] = 0.0
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING

    # when: another worker looks for due deliveries until the dead one's lease ends
    wait_until(lambda: deliveries_send_due() > 0, timeout=30, what="the lease to end")

    # then
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.calls) == 2
    assert receiver.calls[0].headers["webhook-id"] == receiver.calls[1].headers["webhook-id"]
