from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.gateways import OutboundMessage
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
from communications.services.dispatch import BatchHandover
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member
from tests.peers.smtp import SmtpPeer, free_port

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


def _after_the_claim_timeout(settings) -> datetime:
    return timezone.now() + settings.ENGAGE_CLAIM_TIMEOUT + timedelta(seconds=1)


def test_a_claim_handed_over_but_never_confirmed_becomes_unknown_and_is_not_resent(
        smtp_peer, settings):
    mailing = _sending_mailing(members=1, gateway_settings=smtp_peer.gateway_settings())
    [claimed] = messages_claim(mailing_id=mailing.pk, limit=10)
    # The worker marked it handed over, then died before it could record the result.
    Message.objects.filter(pk=claimed).update(handed_at=timezone.now())

    assert messages_mark_unconfirmed_unknown(now=_after_the_claim_timeout(settings)) == 1
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    message = Message.objects.get(pk=claimed)
    assert message.status == "unknown"
    assert smtp_peer.received == []
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED


def test_a_claim_never_handed_over_goes_back_to_the_queue_and_is_sent_once(smtp_peer, settings):
    mailing = _sending_mailing(members=1, gateway_settings=smtp_peer.gateway_settings())
    [claimed] = messages_claim(mailing_id=mailing.pk, limit=10)

    assert messages_mark_unconfirmed_unknown(now=_after_the_claim_timeout(settings)) == 0
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    message = Message.objects.get(pk=claimed)
    assert (message.status, message.attempts) == ("sent", 1)
    assert len(smtp_peer.received) == 1


def test_a_claim_given_back_is_never_sent_by_the_worker_that_held_it(smtp_peer, settings):
    mailing = _sending_mailing(members=1, gateway_settings=smtp_peer.gateway_settings())
    stalled_claim = timezone.now()
    [claimed] = messages_claim(mailing_id=mailing.pk, limit=10, now=stalled_claim)
    # The worker stands still past the claim timeout; the sweeper gives its claim back, and
    # another batch claims and sends it.
    messages_mark_unconfirmed_unknown(now=_after_the_claim_timeout(settings))
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    stalled = BatchHandover(claimed_at=stalled_claim, attempts={claimed: 1},
                            gateway_id=mailing.gateway_id, stamp=None)
    still_ours = stalled.handing([OutboundMessage(message_id=claimed, address="a@example.com",
                                                  subject="Hello", body="Hello")])

    assert still_ours == []
    assert len(smtp_peer.received) == 1


def test_a_cancelled_mailing_s_claim_never_handed_over_ends_cancelled(smtp_peer, settings):
    mailing = _sending_mailing(members=1, gateway_settings=smtp_peer.gateway_settings())
    [claimed] = messages_claim(mailing_id=mailing.pk, limit=10)
    mailing_cancel(mailing=mailing)

    messages_mark_unconfirmed_unknown(now=_after_the_claim_timeout(settings))

    message = Message.objects.get(pk=claimed)
    assert (message.status, message.attempts) == ("cancelled", 0)


def test_a_batch_records_each_chunk_as_it_goes(smtp_peer, settings):
    settings.ENGAGE_HANDOVER_CHUNK = 2
    mailing = _sending_mailing(members=5, gateway_settings=smtp_peer.gateway_settings())

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    handed = sorted(Message.objects.filter(mailing=mailing).values_list("handed_at", flat=True))
    assert len(set(handed)) == 3  # three chunks: 2, 2 and 1
    assert _statuses(mailing) == ["sent"] * 5


def test_a_dropped_smtp_session_leaves_only_its_message_in_doubt_and_gives_the_rest_back(
        settings):
    settings.ENGAGE_HANDOVER_CHUNK = 2
    members = [consenting_member() for _ in range(5)]
    peer = SmtpPeer(drop={members[1].email}).start()
    try:
        mailing = MailingFactory(gateway=GatewayFactory(settings=peer.gateway_settings()))
        mailing_schedule(mailing=mailing)
        mailing_prepare(mailing_id=mailing.pk)

        outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)
    finally:
        peer.stop()

    by_member = {message.member_id: message for message in Message.objects.filter(mailing=mailing)}
    assert (outcome["sent"], outcome["unknown"], outcome["released"]) == (1, 1, 3)
    assert by_member[members[1].pk].status == "unknown"
    assert all((by_member[m.pk].status, by_member[m.pk].attempts) == ("queued", 0)
               for m in members[2:])


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
