from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services import (
    MAX_ATTEMPTS,
    mailing_cancel,
    mailing_prepare,
    mailing_schedule,
    mailings_tick,
    message_batch_dispatch,
    messages_claim,
    messages_mark_unconfirmed_unknown,
)
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member
from tests.peers.smtp import free_port

pytestmark = pytest.mark.django_db


def _sending_mailing(*, members: int, gateway_settings: dict) -> Mailing:
    for _ in range(members):
        consenting_member()
    mailing = MailingFactory(gateway=GatewayFactory(settings=gateway_settings))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    return mailing


def _statuses(mailing: Mailing) -> list[str]:
    return sorted(Message.objects.filter(mailing=mailing).values_list("status", flat=True))


def test_a_batch_sends_its_messages_and_records_them_as_sent(smtp_peer):
    mailing = _sending_mailing(members=3, gateway_settings=smtp_peer.gateway_settings())

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    assert outcome["sent"] == 3
    assert _statuses(mailing) == ["sent"] * 3
    assert all(m.sent_at and m.provider_id for m in Message.objects.filter(mailing=mailing))


def test_mailing_completes_when_its_last_batch_is_recorded(smtp_peer):
    mailing = _sending_mailing(members=2, gateway_settings=smtp_peer.gateway_settings())

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED
    assert mailing.completed_at is not None


def test_a_batch_takes_only_its_batch_size(smtp_peer):
    mailing = _sending_mailing(members=5, gateway_settings=smtp_peer.gateway_settings())

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)

    assert _statuses(mailing) == ["queued"] * 3 + ["sent"] * 2
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING


def test_refused_recipient_fails_with_the_servers_reply_and_the_others_are_sent(smtp_peer):
    mailing = _sending_mailing(members=3, gateway_settings=smtp_peer.gateway_settings())
    refused = Message.objects.filter(mailing=mailing).order_by("pk")[1]
    smtp_peer.handler.refuse.add(refused.address)

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    refused.refresh_from_db()
    assert refused.status == "failed"
    assert refused.error_code == "550"
    assert "Recipient address rejected" in refused.error
    assert _statuses(mailing) == ["failed", "sent", "sent"]


def test_unreachable_server_puts_the_batch_back_in_the_queue_for_a_retry():
    mailing = _sending_mailing(members=2, gateway_settings={
        "host": "127.0.0.1", "port": free_port(), "timeout": 2})

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    assert outcome["retry"] == 2
    assert _statuses(mailing) == ["queued", "queued"]
    assert set(Message.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}


def test_a_message_failing_transiently_on_every_attempt_ends_failed():
    mailing = _sending_mailing(members=1, gateway_settings={
        "host": "127.0.0.1", "port": free_port(), "timeout": 2})

    for attempt in range(MAX_ATTEMPTS):
        # Each retry waits its backoff (30 s, then 60 s): dispatched as if past it.
        message_batch_dispatch(mailing_id=mailing.pk, batch_size=10,
                               now=timezone.now() + timedelta(minutes=5 * attempt))

    message = Message.objects.get(mailing=mailing)
    assert (message.status, message.attempts) == ("failed", MAX_ATTEMPTS)
    assert "cannot connect" in message.error


def test_a_transient_failure_waits_longer_after_each_attempt():
    mailing = _sending_mailing(members=1, gateway_settings={
        "host": "127.0.0.1", "port": free_port(), "timeout": 2})
    waits = []

    for attempt in range(MAX_ATTEMPTS - 1):
        now = timezone.now() + timedelta(minutes=5 * attempt)
        message_batch_dispatch(mailing_id=mailing.pk, batch_size=10, now=now)
        message = Message.objects.get(mailing=mailing)
        waits.append(message.not_before - message.updated_at)  # from when it failed

    assert waits == [timedelta(seconds=30), timedelta(seconds=60)]
    assert message_batch_dispatch(mailing_id=mailing.pk)["claimed"] == 0  # still waiting


def test_two_claims_never_take_the_same_message(smtp_peer):
    mailing = _sending_mailing(members=5, gateway_settings=smtp_peer.gateway_settings())

    first = messages_claim(mailing_id=mailing.pk, limit=3)
    second = messages_claim(mailing_id=mailing.pk, limit=3)

    assert len(first) == 3
    assert len(second) == 2
    assert not set(first) & set(second)


def test_a_cancelled_mailing_claims_nothing(smtp_peer):
    mailing = _sending_mailing(members=2, gateway_settings=smtp_peer.gateway_settings())
    mailing_cancel(mailing=mailing)

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    assert outcome == {"claimed": 0}
    assert smtp_peer.received == []


def test_a_claim_never_confirmed_becomes_unknown_and_is_not_resent(smtp_peer, settings):
    mailing = _sending_mailing(members=1, gateway_settings=smtp_peer.gateway_settings())
    [claimed] = messages_claim(mailing_id=mailing.pk, limit=10)

    later = timezone.now() + settings.ENGAGE_CLAIM_TIMEOUT + timedelta(seconds=1)
    assert messages_mark_unconfirmed_unknown(now=later) == 1
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    message = Message.objects.get(pk=claimed)
    assert message.status == "unknown"
    assert smtp_peer.received == []
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED


def test_a_batch_costs_the_same_number_of_queries_whatever_its_size(smtp_peer):
    def queries_for(new_members: int) -> tuple[int, int]:
        mailing = _sending_mailing(members=new_members,
                                   gateway_settings=smtp_peer.gateway_settings())
        with CaptureQueriesContext(connection) as queries:
            outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=100)
        return outcome["sent"], len(queries)

    small_sent, small_queries = queries_for(2)
    large_sent, large_queries = queries_for(40)

    assert (small_sent, large_sent) == (2, 42)
    assert small_queries == large_queries


def test_tick_starts_only_mailings_that_are_due():
    due = mailing_schedule(mailing=MailingFactory(), at=timezone.now() - timedelta(minutes=1))
    mailing_schedule(mailing=MailingFactory(), at=timezone.now() + timedelta(hours=1))

    outcome = mailings_tick()

    assert outcome["started"] == [due.pk]
