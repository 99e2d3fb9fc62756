"""The fault suite's checker (bench/chaos/checker.py): it must see each kind of broken promise,
or a clean scenario figure proves nothing."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

import pytest
from django.utils import timezone

from bench.chaos.checker import mailing_check, smtp_log_read
from communications.models import Mailing, Message
from members.models import ConsentEvent, ConsentSource
from members.services.consents import consent_record
from tests.communications.factories import MailingFactory, MessageFactory
from tests.peers.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

Status = Message.Status


def _completed_mailing() -> Mailing:
    return MailingFactory(state=Mailing.State.COMPLETED)


def _sent(mailing: Mailing, **fields) -> Message:
    return MessageFactory(mailing=mailing, status=Status.SENT, sent_at=timezone.now(), **fields)


def test_a_message_the_peer_received_twice_is_one_duplicate():
    mailing = _completed_mailing()
    message = _sent(mailing)

    counts = mailing_check(mailing_id=mailing.pk, received={message.pk: [1.0, 2.0]})

    assert (counts["duplicates"], counts["lost"], counts["sent"]) == (1, 0, 1)


def test_a_message_recorded_sent_that_the_peer_never_received_is_lost():
    mailing = _completed_mailing()
    _sent(mailing)

    counts = mailing_check(mailing_id=mailing.pk, received={})

    assert counts["lost"] == 1


def test_a_message_still_queued_when_the_mailing_completed_is_lost():
    mailing = _completed_mailing()
    MessageFactory(mailing=mailing, status=Status.QUEUED)

    counts = mailing_check(mailing_id=mailing.pk, received={})

    assert (counts["lost"], counts["audience"]) == (1, 1)


def test_a_queued_message_of_a_mailing_still_sending_is_not_lost():
    mailing = MailingFactory(state=Mailing.State.SENDING)
    MessageFactory(mailing=mailing, status=Status.QUEUED)

    assert mailing_check(mailing_id=mailing.pk, received={})["lost"] == 0


def test_an_unknown_message_is_in_doubt_not_lost_whether_received_or_not():
    mailing = _completed_mailing()
    received = MessageFactory(mailing=mailing, status=Status.UNKNOWN)
    MessageFactory(mailing=mailing, status=Status.UNKNOWN)

    counts = mailing_check(mailing_id=mailing.pk, received={received.pk: [1.0]})

    assert (counts["unknown"], counts["unknown_received"], counts["lost"]) == (2, 1, 0)


def test_a_receipt_after_the_members_opt_out_on_that_channel_is_unexpected():
    mailing = _completed_mailing()
    message = _sent(mailing)
    opted_out = consent_record(member=message.member, channel="email",
                               action=ConsentEvent.Action.WITHDRAW, source=ConsentSource.API)
    at = opted_out.recorded_at.timestamp()

    counts = mailing_check(mailing_id=mailing.pk, received={message.pk: [at + 1]})

    assert counts["unexpected"] == 1


def test_a_receipt_before_the_members_opt_out_is_not_unexpected():
    mailing = _completed_mailing()
    message = _sent(mailing)
    opted_out = consent_record(member=message.member, channel="email",
                               action=ConsentEvent.Action.WITHDRAW, source=ConsentSource.API)

    counts = mailing_check(mailing_id=mailing.pk,
                           received={message.pk: [opted_out.recorded_at.timestamp() - 1]})

    assert counts["unexpected"] == 0


def test_the_smtp_peers_log_maps_each_submission_to_engages_message_id(tmp_path):
    # given a peer logging to a file, and a message with Engage's Message-ID
    log = tmp_path / "peer.jsonl"
    peer = SmtpPeer(log_path=log, keep_messages=False).start()
    email = EmailMessage()
    email["From"], email["To"] = "club@engage.example.com", "ann@example.com"
    email["Message-ID"] = "<engage.4242.7@engage.invalid>"
    email.set_content("hello")
    before = time.time()
    # when it is submitted twice
    try:
        with smtplib.SMTP("127.0.0.1", peer.port) as client:
            client.send_message(email)
            client.send_message(email)
    finally:
        peer.stop()
    # then the log reads back as two receipts of message 4242
    received = smtp_log_read(log)
    assert list(received) == [4242]
    assert len(received[4242]) == 2 and all(at >= before for at in received[4242])
