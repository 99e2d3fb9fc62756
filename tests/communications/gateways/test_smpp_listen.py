"""`manage.py smpp_listen <gateway id>`: deliver_sm from a real SMSC on loopback go to the
receipts inbox (applied in bulk like webhook receipts) and a member's STOP to the opt-out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.models import Gateway, Message, ProviderReceipt, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.statuses import receipts_apply, receipts_prune
from members.models import Consent
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.conftest import ROOT, wait_until
from tests.members.factories import consenting_member
from tests.peers.smpp import Ack, SmppPeer

PHONE = "+4915112345678"


@pytest.fixture
def smpp_peer() -> Iterator[SmppPeer]:
    peer = SmppPeer().start()
    yield peer
    peer.stop()


def _gateway(peer: SmppPeer) -> Gateway:
    return GatewayFactory(name="SMSC", channel="sms", provider="smpp", sender="",
                          settings=peer.gateway_settings())


def _sent_sms(gateway: Gateway, provider_id: str) -> Message:
    return MessageFactory(channel="sms", address=PHONE, status=Message.Status.SENT,
                          gateway_id=gateway.pk, provider_id=provider_id,
                          sent_at=timezone.now())


def _listen(gateway: Gateway, seconds: float = 0.5, **options) -> None:
    call_command("smpp_listen", str(gateway.pk), seconds=seconds, **options)


@pytest.mark.django_db
def test_a_delivery_receipt_is_stored_acknowledged_and_moves_its_message_when_applied(
        smpp_peer):
    # given: the SMSC holds a receipt until we bind
    gateway = _gateway(smpp_peer)
    message = _sent_sms(gateway, "1f000001")
    sequence = smpp_peer.receipt("1f000001")

    # when
    _listen(gateway)
    receipts_apply()

    # then
    [stored] = ProviderReceipt.objects.filter(gateway=gateway)
    assert (stored.provider_id, stored.status, stored.code) == ("1f000001", "delivered",
                                                                "DELIVRD:000")
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


@pytest.mark.django_db
def test_receipts_that_arrive_together_are_stored_in_one_insert(smpp_peer):
    gateway = _gateway(smpp_peer)
    ids = [f"1f00000{n}" for n in range(1, 6)]
    smpp_peer.receipts(ids)

    with CaptureQueriesContext(connection) as queries:
        _listen(gateway)

    inserts = [q for q in queries.captured_queries
               if q["sql"].startswith(f'INSERT INTO "{ProviderReceipt._meta.db_table}"')]
    assert len(inserts) == 1
    assert sorted(ProviderReceipt.objects.values_list("provider_id", flat=True)) == ids
    assert [ack.status for ack in smpp_peer.acks] == [0] * 5


@pytest.mark.django_db
def test_an_inbound_stop_withdraws_the_senders_sms_consent(smpp_peer):
    member = consenting_member(channel="sms", phone=PHONE)
    sequence = smpp_peer.mo(PHONE, "Stop")

    _listen(_gateway(smpp_peer))

    consent = Consent.objects.get(member=member, channel="sms")
    assert consent.state == Consent.State.WITHDRAWN
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks


@pytest.mark.django_db
def test_an_inbound_text_that_is_not_a_keyword_changes_no_consent(smpp_peer):
    member = consenting_member(channel="sms", phone=PHONE)
    smpp_peer.mo(PHONE, "Please don't stop the offers")

    _listen(_gateway(smpp_peer))

    assert Consent.objects.get(member=member, channel="sms").state == Consent.State.GRANTED


@pytest.mark.django_db
def test_a_stop_from_an_unreadable_number_is_acknowledged_and_dropped(smpp_peer):
    sequence = smpp_peer.mo("12", "STOP")

    _listen(_gateway(smpp_peer))

    # acknowledged: offered again, it would fail the same way forever
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks


@pytest.mark.django_db
def test_a_lost_session_is_bound_again_and_what_the_smsc_held_arrives(smpp_peer):
    gateway = _gateway(smpp_peer)

    def cut_then_report() -> None:
        smpp_peer.drop_sessions()
        smpp_peer.receipt("1f0000aa")

    threading.Timer(0.3, cut_then_report).start()
    _listen(gateway, seconds=1.5, reconnect_delay=0.1)

    assert len(smpp_peer.binds) == 2
    assert list(ProviderReceipt.objects.values_list("provider_id", flat=True)) == ["1f0000aa"]


@pytest.mark.django_db
def test_a_gateway_that_is_not_smpp_is_refused():
    gateway = GatewayFactory(channel="email", provider="smtp")

    with pytest.raises(CommandError, match=f"no SMPP gateway with id {gateway.pk}"):
        _listen(gateway)


@pytest.mark.django_db
def test_a_refused_bind_stops_the_listener_with_the_reason(smpp_peer):
    gateway = GatewayFactory(channel="sms", provider="smpp",
                             settings=smpp_peer.gateway_settings(password="wrong"))

    with pytest.raises(CommandError, match="bind refused"):
        _listen(gateway)


@pytest.mark.django_db
def test_a_two_part_sms_is_matched_on_its_last_parts_receipt_and_the_other_is_pruned_later(
        smpp_peer):
    # given: a 200-character SMS sent in two parts, each with its own id at the SMSC
    QuietHours.objects.filter(channel="sms").delete()
    consenting_member(channel="sms", phone=PHONE)
    gateway = _gateway(smpp_peer)
    mailing = MailingFactory(template=TemplateFactory(channel="sms", subject="", body="x" * 200),
                             gateway=gateway)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    message_batch_dispatch(mailing_id=mailing.pk)
    first, last = smpp_peer.submits
    smpp_peer.receipts([first.message_id, last.message_id])

    # when
    _listen(gateway)
    receipts_apply()

    # then: delivered once, on the last part's receipt
    message = Message.objects.get(mailing=mailing)
    assert (message.status, message.provider_id) == ("delivered", last.message_id)
    assert message.changes.filter(status="delivered").count() == 1
    # the first part's receipt matches nothing and goes once the retention has passed
    assert receipts_prune(now=timezone.now() + timedelta(days=31)) == 1
    assert list(ProviderReceipt.objects.values_list("provider_id", flat=True)) == [
        last.message_id]


def test_run_as_a_process_it_applies_receipts_through_the_worker(smpp_peer,
                                                                 celery_worker_process):
    # given: a committed sent message, a worker, and the SMSC holding its receipt
    gateway = _gateway(smpp_peer)
    message = _sent_sms(gateway, "1f0000bb")
    sequence = smpp_peer.receipt("1f0000bb")
    db = connection.settings_dict
    env = {**os.environ, "DEBUG": "1", "CONN_MAX_AGE": "0",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}

    # when
    listener = subprocess.Popen(
        [sys.executable, "manage.py", "smpp_listen", str(gateway.pk)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: Message.objects.get(pk=message.pk).status == "delivered",
                   timeout=30, what="the receipt applied by the worker")
    finally:
        listener.terminate()  # SIGTERM: unbinds and exits
        output, _ = listener.communicate(timeout=20)

    # then
    assert listener.returncode == 0, output
    assert "Traceback" not in output, output
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks
