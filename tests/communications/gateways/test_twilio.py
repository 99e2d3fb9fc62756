from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_config_validate,
    gateway_for,
)
from communications.gateways.twilio import TwilioGateway
from communications.models import Gateway, Mailing, Message, ProviderReceipt, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.statuses import receipts_apply
from members.models import Consent, ConsentEvent
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import consenting_member
from tests.peers.smtp import free_port
from tests.peers.twilio import TwilioPeer, twilio_signature

SENDER = "+15005550006"
SERVICE_SID = "MG" + "0123456789abcdef" * 2


@pytest.fixture
def twilio_peer() -> Iterator[TwilioPeer]:
    peer = TwilioPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 41, sender: str = SENDER) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="sms", provider="twilio", settings=settings,
        sender=sender, price_per_message=Decimal("0.0079"),
    ))


def _sms(n: int, to: str | None = None, body: str | None = None) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=to or f"+4915100000{n:03d}", subject="",
                           body=body or f"Double points today, member {n}")


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending --------------------------------------------------------------------------------

def test_a_batch_reaches_twilio_with_to_from_body_and_the_status_callback(twilio_peer):
    _send(_gateway(twilio_peer.gateway_settings(), gateway_id=41), [_sms(n) for n in (1, 2, 3)])

    received = sorted(twilio_peer.received, key=lambda sms: sms.to)
    assert [(s.to, s.from_, s.body) for s in received] == [
        (f"+4915100000{n:03d}", SENDER, f"Double points today, member {n}") for n in (1, 2, 3)]
    assert {s.status_callback for s in received} == {
        f"{django_settings.ENGAGE_PUBLIC_URL}/hooks/twilio/41/status"}


def test_results_come_back_in_batch_order_with_twilios_message_sids(twilio_peer):
    results = _send(_gateway(twilio_peer.gateway_settings(concurrency=8)),
                    [_sms(n) for n in range(1, 31)])

    sid_by_to = {sms.to: sms.sid for sms in twilio_peer.received}
    assert [r.message_id for r in results] == list(range(1, 31))
    assert [r.provider_id for r in results] == [sid_by_to[f"+4915100000{n:03d}"]
                                                for n in range(1, 31)]
    assert all(r.provider_id.startswith("SM") for r in results)


def test_a_batch_is_sent_concurrently_not_one_sms_after_another(twilio_peer):
    twilio_peer.script.stalled.update(f"+4915100000{n:03d}" for n in range(8))
    twilio_peer.script.stall_seconds = 0.5

    started = time.monotonic()
    results = _send(_gateway(twilio_peer.gateway_settings(concurrency=8)),
                    [_sms(n) for n in range(8)])

    # One after another would take 8 x 0.5 s.
    assert all(r.ok for r in results)
    assert time.monotonic() - started < 2.5
    assert 1 <= twilio_peer.connections <= 8


def test_a_messaging_service_sends_its_sid_instead_of_a_from_number(twilio_peer):
    settings = twilio_peer.gateway_settings(messaging_service_sid=SERVICE_SID)

    [result] = _send(_gateway(settings), [_sms(1)])

    assert result.ok
    [sms] = twilio_peer.received
    assert (sms.from_, sms.messaging_service_sid) == ("", SERVICE_SID)


def test_an_empty_status_callback_url_sends_no_status_callback(twilio_peer):
    _send(_gateway(twilio_peer.gateway_settings(status_callback_url="")), [_sms(1)])

    assert [sms.status_callback for sms in twilio_peer.received] == [""]


def test_a_long_sms_costs_the_gateway_price_for_each_segment_twilio_counted(twilio_peer):
    long_text = "Your points are waiting for you at the store. " * 7  # 322 characters

    [result] = _send(_gateway(twilio_peer.gateway_settings()), [_sms(1, body=long_text)])

    assert result.cost == Decimal("0.0079") * 3


def test_an_invalid_number_is_a_permanent_error_and_its_siblings_are_sent(twilio_peer):
    twilio_peer.script.invalid.add("+4915100000002")

    results = _send(_gateway(twilio_peer.gateway_settings()), [_sms(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "21211"
    assert "not a valid phone number" in error.message
    assert sorted(sms.to for sms in twilio_peer.received) == ["+4915100000001", "+4915100000003"]


def test_a_member_who_replied_stop_to_the_sender_is_a_permanent_error_saying_so(twilio_peer):
    twilio_peer.script.refused["+4915100000001"] = 21610

    [result] = _send(_gateway(twilio_peer.gateway_settings()), [_sms(1)])

    assert result.error.permanent
    assert result.error.code == "21610"
    assert "replied STOP" in result.error.message


def test_too_many_requests_is_transient_with_the_retry_after(twilio_peer):
    twilio_peer.script.throttled["+4915100000001"] = 17

    [result] = _send(_gateway(twilio_peer.gateway_settings()), [_sms(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "20429"
    assert result.error.retry_after == 17


def test_service_unavailable_is_transient(twilio_peer):
    twilio_peer.script.unavailable.add("+4915100000001")

    [result] = _send(_gateway(twilio_peer.gateway_settings()), [_sms(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "20503"
    assert twilio_peer.received == []


def test_an_sms_left_unanswered_past_the_timeout_is_in_doubt(twilio_peer):
    twilio_peer.script.stalled.add("+4915100000002")
    twilio_peer.script.stall_seconds = 4

    results = _send(_gateway(twilio_peer.gateway_settings(timeout=1)),
                    [_sms(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    # Twilio did take it: resending would text the member twice.
    assert "+4915100000002" in {sms.to for sms in twilio_peer.received}


def test_an_unreachable_twilio_is_transient_and_nothing_is_in_doubt(twilio_peer):
    settings = twilio_peer.gateway_settings(base_url=f"http://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_sms(n) for n in range(3)])

    assert all(not r.ok for r in results)
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


def test_a_wrong_auth_token_fails_the_batch_after_one_request(twilio_peer):
    settings = twilio_peer.gateway_settings(auth_token="0" * 32, concurrency=1)

    results = _send(_gateway(settings), [_sms(n) for n in range(5)])

    assert all(not r.ok and not r.error.permanent for r in results)
    assert {r.error.code for r in results} == {"20003"}
    assert "auth token" in results[0].error.message
    assert [r.status for r in twilio_peer.requests] == [401]
    assert twilio_peer.received == []


def test_a_gateway_with_no_sender_is_refused_at_open(twilio_peer):
    gateway = _gateway(twilio_peer.gateway_settings(), sender="")

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent
    assert "no sender" in error.value.message


# --- health ---------------------------------------------------------------------------------

def test_the_health_probe_finds_the_account_active_without_sending(twilio_peer):
    ok, detail = _gateway(twilio_peer.gateway_settings()).health()

    assert (ok, detail) == (True, "the Twilio account Engage test is active")
    assert twilio_peer.requests == []


def test_the_health_probe_reports_a_wrong_auth_token(twilio_peer):
    ok, detail = _gateway(twilio_peer.gateway_settings(auth_token="0" * 32)).health()

    assert not ok
    assert "[20003]" in detail and "auth token" in detail


def test_the_health_probe_reports_a_suspended_account(twilio_peer):
    twilio_peer.account_status = "suspended"

    ok, detail = _gateway(twilio_peer.gateway_settings()).health()

    assert (ok, detail) == (False, "the Twilio account Engage test is suspended")


# --- settings -------------------------------------------------------------------------------

def test_the_peers_settings_pass_settings_errors(twilio_peer):
    assert TwilioGateway.settings_errors(twilio_peer.gateway_settings()) == {}


def test_settings_errors_name_each_wrong_twilio_setting():
    errors = TwilioGateway.settings_errors({
        "account_sid": "SK123", "messaging_service_sid": "PN123", "base_url": "api.twilio.com",
        "status_callback_url": "/hooks/twilio/1/status", "concurrency": 0, "timeout": -1})

    assert sorted(errors) == ["account_sid", "auth_token", "base_url", "concurrency",
                              "messaging_service_sid", "status_callback_url", "timeout"]


def test_a_twilio_gateway_cannot_be_saved_for_email():
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="email", provider="twilio", settings={})

    assert error.value.message_dict == {"channel": ["twilio does not send email"]}


# --- status callbacks -----------------------------------------------------------------------

def _sent_message(peer: TwilioPeer, gateway: Gateway, *, to: str = "+4915100000001") -> Message:
    """An SMS sent through the peer, recorded as the dispatcher records it."""
    [result] = _send(_gateway(gateway.adapter_settings(), gateway_id=gateway.pk), [_sms(1, to=to)])
    return MessageFactory(gateway=gateway, channel="sms", provider_id=result.provider_id,
                          status=Message.Status.SENT)


def _post_callback(client, peer: TwilioPeer, message: Message, status: str, *,
                   error_code: str | None = None, token: str | None = None,
                   tamper: dict[str, str] | None = None):
    [sms] = [s for s in peer.received if s.sid == message.provider_id]
    params = peer.callback_params(message.provider_id, status, error_code=error_code)
    signature = twilio_signature(auth_token=token or peer.auth_token, url=sms.status_callback,
                                 params=params)
    return client.post(reverse("twilio-status", args=[message.gateway_id]),
                       urlencode({**params, **(tamper or {})}),
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": signature})


@pytest.fixture
def twilio_gateway(db, twilio_peer) -> Gateway:
    return GatewayFactory(name="Twilio", channel="sms", provider="twilio", sender=SENDER,
                          settings=twilio_peer.gateway_settings())


def test_a_signed_delivered_callback_moves_the_message_to_delivered(client, twilio_peer,
                                                                   twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    response = _post_callback(client, twilio_peer, message, "delivered")
    receipts_apply()

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_an_undelivered_callback_keeps_twilios_error_code(client, twilio_peer, twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    _post_callback(client, twilio_peer, message, "undelivered", error_code="30003")
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED
    receipt = ProviderReceipt.objects.get(provider_id=message.provider_id)
    assert (receipt.code, receipt.detail) == (
        "30003", "Twilio undelivered (30003: unreachable destination handset)")


def test_a_failed_callback_marks_the_message_rejected(client, twilio_peer, twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    _post_callback(client, twilio_peer, message, "failed", error_code="30007")
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.REJECTED


def test_a_sent_callback_is_acknowledged_and_stores_nothing(client, twilio_peer, twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    response = _post_callback(client, twilio_peer, message, "sent")

    assert response.status_code == 204
    assert not ProviderReceipt.objects.exists()


def test_a_callback_signed_with_another_auth_token_is_refused_with_403(client, twilio_peer,
                                                                      twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    response = _post_callback(client, twilio_peer, message, "delivered", token="f" * 32)

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert not ProviderReceipt.objects.exists()


def test_a_callback_whose_status_was_altered_after_signing_is_refused(client, twilio_peer,
                                                                     twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)

    response = _post_callback(client, twilio_peer, message, "undelivered",
                              tamper={"MessageStatus": "delivered", "SmsStatus": "delivered"})

    assert response.status_code == 403
    assert not ProviderReceipt.objects.exists()


def test_a_callback_for_a_gateway_of_another_provider_is_not_found(client, twilio_peer,
                                                                  twilio_gateway):
    message = _sent_message(twilio_peer, twilio_gateway)
    Gateway.objects.filter(pk=twilio_gateway.pk).update(provider="smpp")

    response = _post_callback(client, twilio_peer, message, "delivered")

    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_peer_posts_a_signed_callback_over_http_that_is_stored(live_server, twilio_peer):
    gateway = GatewayFactory(channel="sms", provider="twilio", sender=SENDER, settings={})
    url = f"{live_server.url}{reverse('twilio-status', args=[gateway.pk])}"
    gateway.settings = twilio_peer.gateway_settings(status_callback_url=url)
    gateway.save()
    message = _sent_message(twilio_peer, gateway)

    status = twilio_peer.status_callback(message.provider_id, "delivered")

    assert status == 204
    assert list(ProviderReceipt.objects.values_list("provider_id", "status")) == [
        (message.provider_id, "delivered")]


# --- a mailing ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_sms_mailing_goes_out_through_twilio_and_its_callbacks_are_applied(client,
                                                                             twilio_peer):
    # given: any hour will do (quiet hours are tests/communications/test_compliance.py's)
    QuietHours.objects.filter(channel="sms").update(is_active=False)
    ann = consenting_member(channel="sms", first_name="Ann", phone="+4915111111111")
    bob = consenting_member(channel="sms", first_name="Bob", phone="+4915122222222")
    gateway = GatewayFactory(name="Twilio", channel="sms", provider="twilio", sender=SENDER,
                             settings=twilio_peer.gateway_settings())
    mailing = MailingFactory(gateway=gateway, template=TemplateFactory(
        channel="sms", subject="", body="Hi {{ member.first_name }}, double points today"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    # when
    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=1)["claimed"]:
        pass

    # then: one SMS per member, from the gateway's sender, personalized
    assert sorted((s.to, s.from_, s.body) for s in twilio_peer.received) == [
        ("+4915111111111", SENDER, "Hi Ann, double points today"),
        ("+4915122222222", SENDER, "Hi Bob, double points today"),
    ]
    messages = {m.member_id: m for m in Message.objects.filter(mailing=mailing)}
    sids = {s.to: s.sid for s in twilio_peer.received}
    assert {pk: (m.status, m.provider_id) for pk, m in messages.items()} == {
        ann.pk: ("sent", sids["+4915111111111"]), bob.pk: ("sent", sids["+4915122222222"])}

    # and when Twilio reports back
    _post_callback(client, twilio_peer, messages[ann.pk], "delivered")
    _post_callback(client, twilio_peer, messages[bob.pk], "undelivered", error_code="30005")
    receipts_apply()

    assert dict(Message.objects.filter(mailing=mailing).values_list("member_id", "status")) == {
        ann.pk: "delivered", bob.pk: "undelivered"}
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED


@pytest.mark.django_db
def test_a_member_who_replied_stop_to_twilio_has_sms_consent_withdrawn_for_every_gateway(
        twilio_peer):
    # given
    QuietHours.objects.filter(channel="sms").update(is_active=False)
    stopped = consenting_member(channel="sms", phone="+4915133333333")
    twilio_peer.script.refused["+4915133333333"] = 21610
    gateway = GatewayFactory(name="Twilio", channel="sms", provider="twilio", sender=SENDER,
                             settings=twilio_peer.gateway_settings())
    mailing = MailingFactory(gateway=gateway, template=TemplateFactory(
        channel="sms", subject="", body="Hi {{ member.first_name }}"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    # when
    message_batch_dispatch(mailing_id=mailing.pk)

    # then: the message failed with Twilio's code, and the ledger says why SMS stopped
    message = Message.objects.get(mailing=mailing)
    assert (message.status, message.error_code) == ("failed", "21610")
    event = ConsentEvent.objects.get(member=stopped, channel="sms")
    assert (event.action, event.source) == ("withdraw", "sms_stop")
    assert Consent.objects.get(member=stopped, channel="sms", category=None).state == "withdrawn"
