from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from loyalty.webhooks.models import WebhookDelivery
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.tasks import webhooks_relay
from tests.loyalty.webhooks_support import event_record, receiver, subscribe  # noqa: F401
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


class Refused(Exception):
    pass


def test_scheduled_relay_delivers_an_event_whose_nudge_was_lost(receiver):  # noqa: F811
    # given: an event recorded, no nudge sent
    subscribe(receiver)
    event = event_record(MemberFactory())

    # when: the beat schedule's task runs
    webhooks_relay.run()

    # then
    [call] = receiver.verified_calls()
    assert call.headers["webhook-id"] == str(event.id)


def test_event_of_a_rolled_back_change_is_never_relayed(receiver):  # noqa: F811
    subscribe(receiver)
    member = MemberFactory()
    with pytest.raises(Refused), transaction.atomic():
        event_record(member)
        raise Refused

    webhooks_relay.run()

    assert WebhookDelivery.objects.count() == 0
    assert receiver.calls == []


def test_relay_makes_one_delivery_per_event_however_often_it_runs(receiver):  # noqa: F811
    subscribe(receiver)
    event_record(MemberFactory())

    created = [webhooks_relay_pass(), webhooks_relay_pass()]

    assert created == [1, 0]
    assert WebhookDelivery.objects.count() == 1


def test_subscription_gets_only_the_event_types_it_asked_for(receiver):  # noqa: F811
    subscribe(receiver, event_types=["TIER_CHANGED"])
    member = MemberFactory()
    event_record(member, "ORDER_PLACED")
    tier = event_record(member, "TIER_CHANGED")

    webhooks_relay_pass()

    assert list(WebhookDelivery.objects.values_list("event_id", flat=True)) == [tier.id]


def test_new_subscription_does_not_get_earlier_events(receiver):  # noqa: F811
    event_record(MemberFactory())
    subscribe(receiver)

    webhooks_relay_pass()

    assert WebhookDelivery.objects.count() == 0


def test_inactive_subscription_gets_no_deliveries(receiver):  # noqa: F811
    subscribe(receiver, active=False)
    event_record(MemberFactory())

    webhooks_relay_pass()

    assert WebhookDelivery.objects.count() == 0



@pytest.mark.django_db(transaction=True)
def test_event_committed_after_a_later_one_was_relayed_is_still_relayed(receiver):  # noqa: F811
    # given: an event stamped in a transaction that stays open past the relay's pass
    subscribe(receiver)
    member = MemberFactory()
    stamped, go_on = threading.Event(), threading.Event()

    def slow_change() -> None:
        try:
            with transaction.atomic():
                event_record(member, order="slow")
                stamped.set()
                go_on.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_change)
    writer.start()
    stamped.wait(10)
    time.sleep(1.5)
    event_record(member, order="quick")

    # when
    first_pass = webhooks_relay_pass()
    go_on.set()
    writer.join(10)
    second_pass = webhooks_relay_pass()

    # then
    assert (first_pass, second_pass) == (1, 1)
    assert sorted(d.event.payload["order"] for d in WebhookDelivery.objects.all()) == [
        "quick", "slow"]
