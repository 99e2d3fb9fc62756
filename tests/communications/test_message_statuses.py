"""One forward-only status machine: receipts applied in bulk, out of order, twice, or early."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.gateways import Receipt, SendResult
from communications.models import Message, MessageStatusChange, ProviderReceipt
from communications.ratelimit import ratelimit_redis
from communications.services import (
    mailings_tick,
    messages_mark_unconfirmed_unknown,
    messages_record_results,
)
from communications.services.statuses import (
    StatusChange,
    changes_record,
    message_statuses_apply,
    receipts_apply,
    receipts_prune,
    receipts_record,
)
from members.models import Suppression
from tests.communications.factories import GatewayFactory, MessageFactory
from tests.communications.receipts import T0, receive, sent_message

pytestmark = pytest.mark.django_db
Status = Message.Status


def _history(message: Message) -> list[tuple[str, str]]:
    return list(MessageStatusChange.objects.filter(message=message)
                .order_by("id").values_list("status", "source"))


def test_a_delivery_receipt_moves_a_sent_message_to_delivered_and_records_it():
    gateway = GatewayFactory()
    message = sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "delivered", T0 + dt.timedelta(seconds=5)))

    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.delivered_at == T0 + dt.timedelta(seconds=5)
    assert _history(message) == [("delivered", "receipt")]


def test_the_same_receipt_twice_is_stored_and_applied_once():
    gateway = GatewayFactory()
    message = sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "delivered", T0))
    receive(gateway, ("p-1", "delivered", T0))

    assert ProviderReceipt.objects.count() == 1
    assert _history(message) == [("delivered", "receipt")]


def test_a_click_reported_before_its_open_ends_clicked_with_both_recorded_in_order():
    gateway = GatewayFactory()
    message = sent_message(gateway, "p-1")

    receive(gateway, ("p-1", "clicked", T0 + dt.timedelta(minutes=2)),
             ("p-1", "opened", T0 + dt.timedelta(minutes=1)),
             ("p-1", "delivered", T0))

    message.refresh_from_db()
    assert message.status == Status.CLICKED
    assert message.opened_at == T0 + dt.timedelta(minutes=1)
    assert [status for status, _ in _history(message)] == ["delivered", "opened", "clicked"]


def test_a_late_delivery_receipt_does_not_move_a_clicked_message_back():
    gateway = GatewayFactory()
    message = sent_message(gateway, "p-1")
    receive(gateway, ("p-1", "clicked", T0))

    receive(gateway, ("p-1", "delivered", T0 - dt.timedelta(seconds=1)))

    message.refresh_from_db()
    assert message.status == Status.CLICKED
    assert _history(message) == [("clicked", "receipt")]


@pytest.mark.parametrize("final", [Status.FAILED, Status.CANCELLED, Status.SKIPPED])
def test_no_receipt_moves_a_message_engage_already_ended(final):
    message = MessageFactory(status=final)

    made = message_statuses_apply(changes=[StatusChange(message.pk, Status.DELIVERED, T0)],
                                  source="receipt")

    message.refresh_from_db()
    assert (made, message.status) == (0, final)


def test_a_receipt_that_arrives_before_the_send_is_recorded_is_applied_with_it():
    gateway = GatewayFactory()
    message = MessageFactory(status=Status.SENDING, attempts=1)
    receive(gateway, ("p-early", "delivered", T0))

    messages_record_results(results=[SendResult(message.pk, provider_id="p-early")],
                            attempts={message.pk: 1}, gateway_id=gateway.pk)

    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert [status for status, _ in _history(message)] == ["sent", "delivered"]
    assert ProviderReceipt.objects.get().applied_at is not None


def test_a_receipt_for_another_gateways_provider_id_is_not_applied():
    message = sent_message(GatewayFactory(), "p-1")

    receive(GatewayFactory(), ("p-1", "delivered", T0))

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert ProviderReceipt.objects.get().applied_at is None


@pytest.mark.parametrize(("status", "reason"), [("bounced", "hard_bounce"),
                                                ("complained", "complaint")])
def test_bounces_and_complaints_suppress_the_address(status, reason):
    gateway = GatewayFactory()
    sent_message(gateway, "p-1", address="ann@example.com")

    receive(gateway, ("p-1", status, T0))

    suppression = Suppression.objects.get()
    assert (suppression.channel, suppression.address, suppression.reason) == (
        "email", "ann@example.com", reason)


def test_receipts_are_applied_in_a_fixed_number_of_queries_whatever_their_number():
    gateway = GatewayFactory()
    counts = []
    for size in (5, 50):
        for n in range(size):
            sent_message(gateway, f"p-{size}-{n}")
        receipts_record(gateway_id=gateway.pk, receipts=[
            Receipt(provider_id=f"p-{size}-{n}", status="delivered", occurred_at=T0)
            for n in range(size)])
        with CaptureQueriesContext(connection) as queries:
            applied = receipts_apply()
        assert applied == size
        counts.append(len(queries))

    assert counts[0] == counts[1]


def test_a_sent_batch_records_one_history_row_per_message_with_its_outcome():
    gateway = GatewayFactory()
    ok, refused = (MessageFactory(status=Status.SENDING, attempts=1) for _ in range(2))
    from communications.gateways import GatewayError

    messages_record_results(results=[
        SendResult(ok.pk, provider_id="p-ok"),
        SendResult(refused.pk, error=GatewayError("550 no such user", code="550",
                                                  permanent=True)),
    ], attempts={ok.pk: 1, refused.pk: 1}, gateway_id=gateway.pk)

    assert _history(ok) == [("sent", "dispatch")]
    assert _history(refused) == [("failed", "dispatch")]
    assert MessageStatusChange.objects.get(message=refused).code == "550"
    ok.refresh_from_db()
    assert ok.gateway_id == gateway.pk


def test_a_claim_handed_over_and_never_confirmed_ends_unknown_and_says_so_in_its_history(
        settings):
    claimed_at = timezone.now() - settings.ENGAGE_CLAIM_TIMEOUT - dt.timedelta(seconds=1)
    message = MessageFactory(status=Status.SENDING, claimed_at=claimed_at, handed_at=claimed_at)

    assert messages_mark_unconfirmed_unknown() == 1

    assert _history(message) == [("unknown", "sweeper")]


def _insert_statements(queries: CaptureQueriesContext, model) -> int:
    return sum(1 for q in queries.captured_queries
               if q["sql"].startswith(f'INSERT INTO "{model._meta.db_table}"'))


def test_a_webhook_batch_of_receipts_is_stored_in_one_statement_whatever_its_size():
    gateway = GatewayFactory()
    receipts = [Receipt(provider_id=f"p-{n}", status="delivered", occurred_at=T0,
                        code="DELIVERED", detail="ok") for n in range(1200)]

    with CaptureQueriesContext(connection) as queries:
        receipts_record(gateway_id=gateway.pk, receipts=receipts)

    assert _insert_statements(queries, ProviderReceipt) == 1
    stored = ProviderReceipt.objects.get(provider_id="p-1199")
    assert (stored.gateway_id, stored.status, stored.occurred_at, stored.code, stored.detail) == (
        gateway.pk, "delivered", T0, "DELIVERED", "ok")
    assert ProviderReceipt.objects.count() == 1200


def test_the_same_receipt_twice_in_one_batch_is_stored_once():
    gateway = GatewayFactory()
    receipt = Receipt(provider_id="p-1", status="delivered", occurred_at=T0)

    receipts_record(gateway_id=gateway.pk, receipts=[receipt, receipt])

    assert ProviderReceipt.objects.count() == 1


def test_status_changes_are_recorded_in_one_statement_whatever_their_number():
    messages = [sent_message(GatewayFactory(), f"p-{n}") for n in range(3)]
    changes = [StatusChange(m.pk, "delivered", T0, "DELIVRD:000", "from the SMSC")
               for m in messages] * 400

    with CaptureQueriesContext(connection) as queries:
        changes_record(changes=changes, source="receipt", recorded_at=T0)

    assert _insert_statements(queries, MessageStatusChange) == 1
    assert MessageStatusChange.objects.count() == 1200
    assert set(MessageStatusChange.objects.values_list(
        "message_id", "status", "occurred_at", "recorded_at", "source", "code", "detail")) == {
        (m.pk, "delivered", T0, T0, "receipt", "DELIVRD:000", "from the SMSC") for m in messages}


def test_unmatched_receipts_past_the_retention_are_pruned_and_the_others_kept(settings):
    # given: two unmatched receipts, one old and one recent, and an old one that was applied
    settings.ENGAGE_RECEIPT_RETENTION_DAYS = 7
    gateway = GatewayFactory()
    sent_message(gateway, "p-applied")
    receipts_record(gateway_id=gateway.pk, receipts=[
        Receipt(provider_id=provider_id, status="delivered", occurred_at=T0)
        for provider_id in ("p-old-stray", "p-applied")])
    receipts_apply()
    ProviderReceipt.objects.update(received_at=timezone.now() - dt.timedelta(days=8))
    receive(gateway, ("p-recent-stray", "delivered", T0))

    # when
    pruned = receipts_prune()

    # then
    assert pruned == 1
    assert set(ProviderReceipt.objects.values_list("provider_id", flat=True)) == {
        "p-applied", "p-recent-stray"}



def test_the_scheduler_tick_applies_a_recent_receipt_both_applies_missed():
    # given: a receipt stored while its message's batch had not committed, so no apply
    # matched it, and the batch has committed since
    gateway = GatewayFactory()
    receipts_record(gateway_id=gateway.pk, receipts=[
        Receipt(provider_id="p-late", status="delivered", occurred_at=T0)])
    message = sent_message(gateway, "p-late")

    # when
    outcome = mailings_tick()

    # then
    message.refresh_from_db()
    assert outcome["late_receipts"] == 1
    assert message.status == Status.DELIVERED


def test_the_scheduler_tick_leaves_old_unmatched_receipts_to_the_prune():
    gateway = GatewayFactory()
    receipts_record(gateway_id=gateway.pk, receipts=[
        Receipt(provider_id="p-old", status="delivered", occurred_at=T0)])
    ProviderReceipt.objects.update(received_at=timezone.now() - dt.timedelta(days=1))
    sent_message(gateway, "p-old")

    assert mailings_tick()["late_receipts"] == 0


def test_webhook_calls_share_one_apply_task_until_it_starts():
    from communications.services.statuses import receipts_apply_enqueue, receipts_apply_started
    from config.celery import app as celery_app

    celery_app.control.purge()
    receipts_apply_started()  # no flag left by an earlier test
    queue = ratelimit_redis()  # the broker's Redis

    receipts_apply_enqueue()
    receipts_apply_enqueue()
    assert queue.llen("celery") == 1

    receipts_apply_started()
    receipts_apply_enqueue()
    assert queue.llen("celery") == 2
    celery_app.control.purge()
