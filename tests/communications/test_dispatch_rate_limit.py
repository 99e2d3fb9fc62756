"""The gateway's rate limit in the dispatcher: a batch keeps to `rate_per_second` through the
bucket every worker shares in Redis, and a provider's throttle reply slows that bucket."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.core.exceptions import ValidationError

from communications.gateways import OutboundMessage
from communications.models import Gateway, Mailing, Message, MessageStatusChange
from communications.ratelimit import REDIS_KEY_PREFIX, gateway_bucket, ratelimit_redis
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.sending import (
    gateway_rate,
    gateway_send,
)
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member
from tests.peers.smtp import RecordingHandler, SmtpPeer, free_port

pytestmark = pytest.mark.django_db

THROTTLE_REPLY = "454 4.7.0 Throttling failure: Maximum sending rate exceeded."


@dataclass
class ThrottlingHandler(RecordingHandler):
    """Answers the next `throttle` recipients 454, as Amazon SES does past the sending rate."""

    throttle: int = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            if self.throttle > 0:
                self.throttle -= 1
                return THROTTLE_REPLY
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class ThrottlingPeer(SmtpPeer):
    def __init__(self, *, throttle: int) -> None:
        self.handler = ThrottlingHandler(throttle=throttle)
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)


@pytest.fixture
def throttling_peer():
    peer = ThrottlingPeer(throttle=1).start()
    yield peer
    peer.stop()


@pytest.fixture
def buckets():
    """Bucket keys of this test's gateways, emptied before and after: the test database's ids
    start over on every run, Redis keeps the last run's buckets for a minute."""
    keys: list[str] = []

    def fresh(gateway: Gateway) -> None:
        key = f"{REDIS_KEY_PREFIX}gateway:{gateway.pk}"
        ratelimit_redis().delete(key)
        keys.append(key)

    yield fresh
    for key in keys:
        ratelimit_redis().delete(key)


def _sending(*, members: int, gateway_settings: dict, buckets) -> Mailing:
    for _ in range(members):
        consenting_member()
    mailing = MailingFactory(gateway=GatewayFactory(settings=gateway_settings))
    buckets(mailing.gateway)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    return mailing


def _messages(mailing: Mailing) -> list[Message]:
    return list(Message.objects.filter(mailing=mailing).order_by("pk"))


def test_a_batch_of_20_at_10_per_second_takes_about_2_seconds(smtp_peer, buckets):
    mailing = _sending(members=20, buckets=buckets,
                       gateway_settings={**smtp_peer.gateway_settings(), "rate_per_second": 10})

    started = time.monotonic()
    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)
    took = time.monotonic() - started

    assert outcome["sent"] == 20
    assert len(smtp_peer.received) == 20
    # the first token is in the bucket, the other 19 come every 0.1 s
    assert 1.8 <= took <= 3.0


def test_a_rate_limited_batch_claims_only_what_the_rate_grants_within_its_wait(smtp_peer,
                                                                              buckets):
    mailing = _sending(members=5, buckets=buckets,
                       gateway_settings={**smtp_peer.gateway_settings(), "rate_per_second": 2})

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50, rate_wait_s=1.0)

    assert (outcome["claimed"], outcome["sent"]) == (2, 2)
    assert sorted(m.status for m in _messages(mailing)) == ["queued"] * 3 + ["sent"] * 2


def test_messages_the_bucket_has_no_slot_for_in_time_go_back_to_the_queue_without_an_attempt(
        smtp_peer, buckets):
    mailing = _sending(members=3, buckets=buckets,
                       gateway_settings={**smtp_peer.gateway_settings(), "rate_per_second": 10})
    # another worker was told to back off for half a minute
    gateway_bucket(gateway_id=mailing.gateway_id, rate=10).throttle(30)

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50, rate_wait_s=0.3)

    assert outcome["released"] == 3
    assert smtp_peer.received == []
    assert [(m.status, m.attempts) for m in _messages(mailing)] == [("queued", 0)] * 3
    assert set(MessageStatusChange.objects.filter(message__mailing=mailing)
               .values_list("status", "code")) == {("queued", "not_sent")}


def test_a_throttle_reply_from_the_smtp_server_slows_the_bucket_every_worker_shares(
        throttling_peer, buckets):
    mailing = _sending(members=3, buckets=buckets, gateway_settings={
        **throttling_peer.gateway_settings(), "rate_per_second": 100})

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)

    # as another worker sees it
    status = gateway_bucket(gateway_id=mailing.gateway_id, rate=100).status()
    assert status.rate == pytest.approx(50, rel=0.05)
    assert status.blocked_s > 0.5


def test_the_throttled_message_is_retried_later_with_the_servers_reply(throttling_peer,
                                                                      buckets):
    mailing = _sending(members=1, buckets=buckets, gateway_settings={
        **throttling_peer.gateway_settings(), "rate_per_second": 100})

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)

    [message] = _messages(mailing)
    assert outcome["retry"] == 1
    assert (message.status, message.attempts) == ("queued", 1)
    change = MessageStatusChange.objects.get(message=message)
    assert (change.status, change.code) == ("queued", "454")


def test_messages_after_a_throttle_reply_go_back_to_the_queue_without_an_attempt(
        throttling_peer, buckets):
    mailing = _sending(members=3, buckets=buckets, gateway_settings={
        **throttling_peer.gateway_settings(), "rate_per_second": 10})

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)

    throttled, *rest = _messages(mailing)
    assert outcome["released"] == 2
    assert throttling_peer.received == []
    assert (throttled.status, throttled.attempts) == ("queued", 1)
    assert [(m.status, m.attempts) for m in rest] == [("queued", 0)] * 2


def test_without_the_rate_limits_redis_the_batch_goes_back_to_the_queue_unsent(
        smtp_peer, buckets, settings):
    mailing = _sending(members=2, buckets=buckets,
                       gateway_settings={**smtp_peer.gateway_settings(), "rate_per_second": 10})
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)

    assert outcome["released"] == 2
    assert smtp_peer.received == []
    assert [(m.status, m.attempts) for m in _messages(mailing)] == [("queued", 0)] * 2


def test_an_smtp_454_reply_is_a_transient_error_with_a_retry_after(throttling_peer):
    gateway = GatewayFactory(settings={**throttling_peer.gateway_settings(),
                                       "throttle_retry_after": 2.5})

    [result] = gateway_send(gateway=gateway, batch=[OutboundMessage(
        message_id=1, address="someone@members.example.com", subject="Hi", body="Hello")])

    assert (result.error.code, result.error.permanent, result.error.retry_after) == (
        "454", False, 2.5)


@pytest.mark.parametrize("rate", [0, -5, "fast", True, float("inf")])
def test_a_gateway_rate_per_second_must_be_a_positive_number(rate):
    gateway = GatewayFactory.build(settings={"host": "smtp.example.com", "rate_per_second": rate})

    with pytest.raises(ValidationError, match="rate_per_second: must be a number of messages "
                                              "per second above 0"):
        gateway.clean()


def test_a_gateway_may_send_less_than_one_message_per_second():
    gateway = GatewayFactory.build(settings={"host": "smtp.example.com", "rate_per_second": 0.5})

    gateway.clean()

    assert gateway_rate(gateway=gateway) == 0.5
