from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from loyalty.webhooks.delivery import (
    RETRY_AFTER_MAX,
    RETRY_DELAYS,
    deliveries_claim,
    deliveries_send_due,
    retry_delay,
)
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.services import deliveries_replay, subscription_update
from tests.loyalty.webhooks_support import (  # noqa: F401
    delivery_make_due,
    event_record,
    receiver,
    subscribe,
    subscription_prove,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def batches_sent(subscription: WebhookSubscription) -> list[int]:
    """How many calls each batch made to the subscription, oldest batch first: a batch stamps
    its attempts with one time."""
    stamps = WebhookAttempt.objects.filter(delivery__subscription=subscription).values_list(
        "attempted_at", flat=True)
    return [count for _, count in sorted(Counter(stamps).items())]


def one_delivery(receiver, **fields) -> WebhookDelivery:  # noqa: F811
    subscribe(receiver, **fields)
    event_record(MemberFactory())
    webhooks_relay_pass()
    return WebhookDelivery.objects.get()


def test_backoff_grows_over_about_a_day_then_gives_up():
    waits = [retry_delay(attempt) for attempt in range(1, len(RETRY_DELAYS) + 2)]

    pairs = zip(waits[:-1], RETRY_DELAYS, strict=True)
    assert all(0.9 * plan <= wait <= 1.1 * plan for wait, plan in pairs)
    assert timedelta(hours=20) < sum(RETRY_DELAYS, timedelta()) < timedelta(hours=30)
    assert waits[-1] is None


def test_delivery_answered_500_is_retried_after_the_backoff_and_then_succeeds(receiver):  # noqa: F811
    # given
    delivery = one_delivery(receiver)
    receiver.script["answers"] = [500]

    # when: the first attempt fails
    before = timezone.now()
    deliveries_send_due()
    delivery.refresh_from_db()

    # then: it waits about 5 s, is not sent before that, and succeeds once due
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert before + timedelta(seconds=4) < delivery.next_attempt_at < before + timedelta(
        seconds=7)
    deliveries_send_due()
    assert len(receiver.calls) == 1
    delivery_make_due(delivery)
    deliveries_send_due()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [call.answered for call in receiver.calls] == [500, 200]
    assert [a.status_code for a in delivery.attempt_log.order_by("id")] == [500, 200]


def test_delivery_that_times_out_is_retried_with_the_error_logged(receiver, settings):  # noqa: F811
    # given
    settings.ENGAGE_WEBHOOK_TIMEOUT = 0.3
    delivery = one_delivery(receiver)
    receiver.script["stall"] = 2.0

    # when
    deliveries_send_due()

    # then
    delivery.refresh_from_db()
    attempt = delivery.attempt_log.get()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.next_attempt_at > timezone.now()
    assert attempt.status_code is None
    assert attempt.error.startswith("timeout")
    assert attempt.duration_ms >= 300


def test_delivery_answered_400_fails_without_retry(receiver):  # noqa: F811
    delivery = one_delivery(receiver)
    receiver.script["answers"] = [400]

    deliveries_send_due()

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.attempt_log.get().response_excerpt == '{"status": 400}'


def test_delivery_answered_429_is_retried(receiver):  # noqa: F811
    delivery = one_delivery(receiver)
    receiver.script["answers"] = [429]

    deliveries_send_due()

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING


def test_a_429s_retry_after_longer_than_the_backoff_sets_the_next_attempt(receiver):  # noqa: F811
    delivery = one_delivery(receiver)
    receiver.script.update(answers=[429], retry_after=3600)

    before = timezone.now()
    deliveries_send_due()

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert (before + timedelta(seconds=3600) <= delivery.next_attempt_at
            <= timezone.now() + timedelta(seconds=3600))


def test_a_retry_after_shorter_than_the_backoff_leaves_the_backoff():
    assert retry_delay(2, retry_after=1) >= 0.9 * RETRY_DELAYS[1]


def test_a_retry_after_beyond_the_schedule_waits_at_most_its_longest_step():
    assert retry_delay(1, retry_after=7 * 86_400) == RETRY_AFTER_MAX


def test_answer_410_fails_the_delivery_and_disables_the_subscription(receiver):  # noqa: F811
    # given
    delivery = one_delivery(receiver)
    receiver.script["answer_gone"] = True

    # when
    deliveries_send_due()

    # then
    delivery.refresh_from_db()
    subscription = WebhookSubscription.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert not subscription.active
    assert "410" in subscription.disabled_reason
    event_record(MemberFactory())
    webhooks_relay_pass()
    deliveries_send_due()
    assert len(receiver.calls) == 1


def test_subscription_failing_for_days_is_disabled_and_its_owner_told(
        receiver, django_capture_on_commit_callbacks):  # noqa: F811
    # given: every attempt has failed for six days
    delivery = one_delivery(receiver, owner_email="ops@shop.example.com")
    WebhookSubscription.objects.update(failing_since=timezone.now() - timedelta(days=6))
    receiver.script["answers"] = [503]

    # when
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_send_due()

    # then
    subscription = WebhookSubscription.objects.get()
    assert not subscription.active
    assert subscription.disabled_at is not None
    [message] = mail.outbox
    assert message.to == ["ops@shop.example.com"]
    assert receiver.hook_url in message.subject
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING


def test_success_ends_a_failing_streak(receiver):  # noqa: F811
    one_delivery(receiver)
    WebhookSubscription.objects.update(failing_since=timezone.now() - timedelta(days=1))

    deliveries_send_due()

    assert WebhookSubscription.objects.get().failing_since is None


def test_replayed_delivery_is_sent_again(receiver):  # noqa: F811
    # given
    delivery = one_delivery(receiver)
    deliveries_send_due()

    # when
    deliveries_replay(ids=[delivery.pk])
    deliveries_send_due()

    # then
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.verified_calls()) == 2
    assert receiver.calls[0].headers["webhook-id"] == receiver.calls[1].headers["webhook-id"]
    assert delivery.attempt_log.count() == 2


def test_ordered_subscription_holds_a_members_next_event_until_the_previous_one_succeeded(
        receiver):  # noqa: F811
    # given
    subscribe(receiver, ordered=True)
    member = MemberFactory()
    first = event_record(member, order="A-1")
    second = event_record(member, order="A-2")
    webhooks_relay_pass()
    receiver.script["answers"] = [500]

    # when: the first fails
    deliveries_send_due()

    # then: the second waits for it
    assert [c.headers["webhook-id"] for c in receiver.calls] == [str(first.id)]
    delivery_make_due(WebhookDelivery.objects.get(event=first))
    deliveries_send_due()
    deliveries_send_due()
    assert [c.headers["webhook-id"] for c in receiver.calls] == [
        str(first.id), str(first.id), str(second.id)]


def test_unordered_subscription_sends_a_members_next_event_while_the_previous_one_waits(
        receiver):  # noqa: F811
    subscription_prove(subscribe(receiver))
    member = MemberFactory()
    event_record(member, order="A-1")
    event_record(member, order="A-2")
    webhooks_relay_pass()
    receiver.script["answers"] = [500]

    deliveries_send_due()

    assert [call.answered for call in receiver.calls] == [500, 200]


def test_claimed_delivery_is_not_claimed_again_until_its_lease_ends(receiver):  # noqa: F811
    # given: a worker claimed it and died
    delivery = one_delivery(receiver)
    assert deliveries_claim() == [delivery.pk]

    # then
    assert deliveries_claim() == []
    WebhookDelivery.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert deliveries_claim() == [delivery.pk]


def test_attempt_keeps_at_most_a_kilobyte_of_the_answer(receiver):  # noqa: F811
    delivery = one_delivery(receiver)
    receiver.script["answer_body"] = "x" * 100_000

    deliveries_send_due()

    assert delivery.attempt_log.get().response_excerpt == "x" * 1024


def deliveries_due(receiver, count: int) -> None:  # noqa: F811
    """`count` deliveries of one event each, to the receiver, due now."""
    subscribe(receiver)
    for _ in range(count):
        event_record(MemberFactory())
    webhooks_relay_pass()


def first_probe_failed(receiver, count: int) -> None:  # noqa: F811
    """`count` deliveries to a new receiver whose first call, the probe, answered 500."""
    deliveries_due(receiver, count)
    receiver.script["answers"] = [500]
    deliveries_send_due()


def more_events(count: int) -> None:
    for _ in range(count):
        event_record(MemberFactory())
    webhooks_relay_pass()


def all_made_due() -> None:
    for delivery in WebhookDelivery.objects.all():
        delivery_make_due(delivery)


def test_claimed_batch_goes_out_concurrently(receiver, settings):  # noqa: F811
    # given: eight deliveries to a receiver that takes a second over each answer
    settings.ENGAGE_WEBHOOK_IN_FLIGHT = 8
    deliveries_due(receiver, 8)
    receiver.script["stall"] = 1.0

    # when
    started = time.monotonic()
    deliveries_send_due()
    took = time.monotonic() - started

    # then: about one second, not eight
    assert took < 4
    assert len(receiver.verified_calls()) == 8
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_calls_in_flight_are_bounded(receiver, settings):  # noqa: F811
    # given: at most two calls at once, each answered after half a second
    settings.ENGAGE_WEBHOOK_IN_FLIGHT = 2
    deliveries_due(receiver, 6)
    receiver.script["stall"] = 0.5

    # when
    started = time.monotonic()
    deliveries_send_due()

    # then: three rounds
    assert time.monotonic() - started >= 1.5
    assert len(receiver.calls) == 6


def test_lease_covers_every_round_of_the_claimed_batch(receiver, settings):  # noqa: F811
    settings.ENGAGE_WEBHOOK_IN_FLIGHT = 2
    settings.ENGAGE_WEBHOOK_TIMEOUT = 10
    settings.ENGAGE_WEBHOOK_LEASE_MARGIN = 30
    deliveries_due(receiver, 5)

    before = timezone.now()
    assert len(deliveries_claim()) == 5

    # three rounds of two calls, each up to 10 s, plus the margin
    lease_ends = set(WebhookDelivery.objects.values_list("claimed_until", flat=True))
    [lease_end] = lease_ends
    assert before + timedelta(seconds=59) < lease_end < before + timedelta(seconds=62)


def test_new_subscription_gets_one_probe_then_the_rest_of_its_batch(receiver):  # noqa: F811
    # given: five deliveries to a receiver never called before
    deliveries_due(receiver, 5)
    subscription = WebhookSubscription.objects.get()
    oldest = WebhookDelivery.objects.order_by("id").first()

    # when
    deliveries_send_due()

    # then: the oldest went alone, the four others once it had succeeded
    assert batches_sent(subscription) == [1, 4]
    assert receiver.calls[0].headers["webhook-id"] == str(oldest.event_id)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    subscription.refresh_from_db()
    assert subscription.healthy_since is not None


def test_proven_subscription_gets_its_whole_batch_at_once(receiver):  # noqa: F811
    deliveries_due(receiver, 5)
    subscription = subscription_prove(WebhookSubscription.objects.get())

    deliveries_send_due()

    assert batches_sent(subscription) == [5]


def test_gone_receiver_is_called_once_and_the_held_deliveries_spend_no_attempt(
        receiver):  # noqa: F811
    # given: ten deliveries to a new subscription whose receiver answers 410
    deliveries_due(receiver, 10)
    receiver.script["answer_gone"] = True

    # when
    deliveries_send_due()

    # then
    assert len(receiver.calls) == 1
    subscription = WebhookSubscription.objects.get()
    assert not subscription.active
    held = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    assert held.count() == 9
    assert set(held.values_list("attempts", "claimed_until")) == {(0, None)}


def test_proven_receiver_gone_gets_no_call_after_its_410(receiver, settings):  # noqa: F811
    # given: ten deliveries to a proven subscription whose receiver now answers 410, one call
    # in flight at a time
    settings.ENGAGE_WEBHOOK_IN_FLIGHT = 1
    deliveries_due(receiver, 10)
    subscription_prove(WebhookSubscription.objects.get())
    receiver.script["answer_gone"] = True

    # when
    deliveries_send_due()

    # then: the 410 was the last call; the rest wait, no attempt spent, for a replay
    assert len(receiver.calls) == 1
    assert not WebhookSubscription.objects.get().active
    held = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    assert held.count() == 9
    assert set(held.values_list("attempts", "claimed_until")) == {(0, None)}
    assert WebhookAttempt.objects.count() == 1


def test_calls_in_flight_when_a_receiver_answers_410_are_recorded(
        receiver, settings):  # noqa: F811
    # given: two calls in flight at a time to a proven receiver that answers 410
    settings.ENGAGE_WEBHOOK_IN_FLIGHT = 2
    deliveries_due(receiver, 6)
    subscription_prove(WebhookSubscription.objects.get())
    receiver.script["answer_gone"] = True

    # when
    deliveries_send_due()

    # then: every call made has its attempt, and no more than the calls in flight were made
    calls = len(receiver.calls)
    assert 1 <= calls <= 2
    assert WebhookAttempt.objects.count() == calls
    assert WebhookDelivery.objects.filter(attempts=0, status="pending").count() == 6 - calls


def test_deliveries_held_behind_a_failed_probe_wait_for_its_retry(receiver):  # noqa: F811
    # given: four deliveries to a new subscription, the first call answered 500
    deliveries_due(receiver, 4)
    receiver.script["answers"] = [500]

    # when
    deliveries_send_due()

    # then: one call; the three others wait as long as the probe, without an attempt
    assert len(receiver.calls) == 1
    probe, *held = WebhookDelivery.objects.order_by("id")
    assert probe.attempts == 1
    assert {(d.attempts, d.next_attempt_at) for d in held} == {(0, probe.next_attempt_at)}
    assert probe.next_attempt_at > timezone.now() + timedelta(seconds=3)


def test_probe_retried_with_success_releases_the_held_deliveries(receiver):  # noqa: F811
    first_probe_failed(receiver, 4)

    all_made_due()
    deliveries_send_due()

    subscription = WebhookSubscription.objects.get()
    assert batches_sent(subscription) == [1, 1, 3]
    assert list(WebhookDelivery.objects.order_by("id").values_list("attempts", flat=True)) == [
        2, 1, 1, 1]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_events_arriving_after_a_failed_probe_wait_for_its_retry(receiver):  # noqa: F811
    # given: a new receiver whose first call failed
    first_probe_failed(receiver, 1)
    [probe] = WebhookDelivery.objects.all()

    # when: more events come, due at once
    more_events(3)
    deliveries_send_due()

    # then: no call until the probe's retry, which the subscription now waits for
    assert len(receiver.calls) == 1
    subscription = WebhookSubscription.objects.get()
    assert subscription.probe_at == probe.next_attempt_at
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"pending"}


def test_subscription_is_probed_again_once_its_probe_is_due(receiver):  # noqa: F811
    first_probe_failed(receiver, 1)
    more_events(3)

    all_made_due()
    deliveries_send_due()

    subscription = WebhookSubscription.objects.get()
    assert batches_sent(subscription) == [1, 1, 3]
    assert (subscription.probe_at, subscription.healthy_since is not None) == (None, True)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_replay_probes_a_waiting_subscription_at_once(receiver):  # noqa: F811
    first_probe_failed(receiver, 1)

    deliveries_replay(ids=list(WebhookDelivery.objects.values_list("id", flat=True)))
    deliveries_send_due()

    assert len(receiver.calls) == 2
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_subscription_pointed_elsewhere_is_probed_at_once(receiver):  # noqa: F811
    first_probe_failed(receiver, 1)
    subscription = WebhookSubscription.objects.get()

    subscription_update(subscription=subscription, url=receiver.hook_url + "?v=2")

    subscription.refresh_from_db()
    assert subscription.probe_at is None


def test_subscription_switched_back_on_is_probed_at_once(receiver):  # noqa: F811
    first_probe_failed(receiver, 1)
    subscription = WebhookSubscription.objects.get()
    WebhookSubscription.objects.update(active=False, disabled_at=timezone.now())
    subscription.refresh_from_db()

    subscription_update(subscription=subscription, active=True)

    subscription.refresh_from_db()
    assert (subscription.active, subscription.probe_at) == (True, None)


def test_subscription_whose_batch_all_failed_is_on_probation_again(receiver):  # noqa: F811
    deliveries_due(receiver, 3)
    subscription_prove(WebhookSubscription.objects.get())
    receiver.script["answers"] = [503, 503, 503]

    deliveries_send_due()

    subscription = WebhookSubscription.objects.get()
    assert subscription.healthy_since is None
    assert subscription.failing_since is not None


def test_subscription_pointed_elsewhere_must_prove_itself_again(receiver):  # noqa: F811
    subscription = subscription_prove(subscribe(receiver))

    subscription_update(subscription=subscription, url=receiver.hook_url + "?v=2")

    subscription.refresh_from_db()
    assert subscription.healthy_since is None


def test_subscription_renamed_stays_proven(receiver):  # noqa: F811
    subscription = subscription_prove(subscribe(receiver))

    subscription_update(subscription=subscription, description="Shop CRM")

    subscription.refresh_from_db()
    assert subscription.healthy_since is not None


def test_probe_is_the_most_tried_of_the_claimed_deliveries(receiver):  # noqa: F811
    # given: the second delivery failed before, and its subscription is failing
    deliveries_due(receiver, 3)
    _, tried, _ = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=tried.pk).update(attempts=2)
    WebhookSubscription.objects.update(failing_since=timezone.now())

    deliveries_send_due()

    assert receiver.calls[0].headers["webhook-id"] == str(tried.event_id)
