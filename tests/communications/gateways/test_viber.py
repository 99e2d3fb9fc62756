"""The Viber adapter against a Viber partner API peer on loopback, and its signed callbacks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.viber import (
    ACCOUNT_GONE_CODES,
    ViberGateway,
    callback_signature,
)
from communications.models import Message, ProviderReceipt
from communications.services.sending import (
    gateway_config,
)
from communications.services.statuses import receipts_apply
from members.models import Consent, ConsentEvent
from tests.communications.factories import GatewayFactory, MessageFactory
from tests.members.factories import ConsentFactory, MessengerAccountFactory
from tests.peers.smtp import free_port
from tests.peers.viber import FIRST_TOKEN, ViberPeer

IMAGE = "https://cdn.engage.example.com/offers/autumn.jpg"
LINK = "https://club.engage.example.com/offers/autumn"


@pytest.fixture
def viber_peer() -> Iterator[ViberPeer]:
    peer = ViberPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, sender: str = "Engage Club") -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=41, channel="viber", provider="viber", settings=settings, sender=sender,
        price_per_message=Decimal("0.0150"),
    ))


def _message(n: int, receiver: str | None = None, body: str | None = None,
             **rich: str) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=receiver or f"viber-user-{n}=", subject="",
                           body=f"Your points, member {n}" if body is None else body, **rich)


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending ------------------------------------------------------------------------------

def test_a_text_message_reaches_viber_with_receiver_sender_and_our_message_id(viber_peer):
    _send(_gateway(viber_peer.gateway_settings(sender_avatar=IMAGE)), [_message(7)])

    [sent] = viber_peer.sent
    assert (sent.receiver, sent.type, sent.text) == ("viber-user-7=", "text",
                                                     "Your points, member 7")
    assert sent.sender == {"name": "Engage Club", "avatar": IMAGE}
    assert sent.tracking_data == "7"


def test_results_come_back_in_batch_order_with_vibers_message_tokens(viber_peer):
    results = _send(_gateway(viber_peer.gateway_settings(concurrency=4)),
                    [_message(n) for n in range(1, 21)])

    token_by_receiver = {sent.receiver: sent.message_token for sent in viber_peer.sent}
    assert [r.message_id for r in results] == list(range(1, 21))
    # Tokens are past 2**53: every digit must survive the JSON round trip.
    assert [r.provider_id for r in results] == [
        str(token_by_receiver[f"viber-user-{n}="]) for n in range(1, 21)]
    assert all(int(r.provider_id) >= FIRST_TOKEN for r in results)


def test_sent_messages_cost_the_gateway_price(viber_peer):
    [result] = _send(_gateway(viber_peer.gateway_settings()), [_message(1)])

    assert result.cost == Decimal("0.0150")


def test_a_message_with_an_image_goes_as_a_picture_with_its_caption(viber_peer):
    [result] = _send(_gateway(viber_peer.gateway_settings()),
                     [_message(1, body="Autumn offer", image_url=IMAGE)])

    [sent] = viber_peer.sent
    assert result.ok
    assert (sent.type, sent.text, sent.media) == ("picture", "Autumn offer", IMAGE)


def test_a_message_with_a_button_goes_as_rich_media_with_one_link_button(viber_peer):
    [result] = _send(_gateway(viber_peer.gateway_settings()), [_message(
        1, body="Autumn offer", image_url=IMAGE, link_url=LINK, button_text="See offer")])

    [sent] = viber_peer.sent
    assert result.ok
    assert sent.type == "rich_media" and sent.min_api_version >= 2
    buttons = sent.rich_media["Buttons"]
    assert [b.get("Image") for b in buttons if b.get("Image")] == [IMAGE]
    assert [b["Text"] for b in buttons if b["ActionType"] == "none"] == ["Autumn offer"]
    links = [b for b in buttons if b["ActionType"] == "open-url" and b.get("Text")]
    assert [(b["Text"], b["ActionBody"]) for b in links] == [("See offer", LINK)]


def test_a_button_without_its_link_is_refused_unsent(viber_peer):
    [result] = _send(_gateway(viber_peer.gateway_settings()),
                     [_message(1, button_text="See offer")])

    assert result.error.permanent and result.error.code == "bad_button"
    assert viber_peer.requests == []


def test_a_caption_over_vibers_768_characters_is_refused_unsent(viber_peer):
    [result] = _send(_gateway(viber_peer.gateway_settings()),
                     [_message(1, body="x" * 769, image_url=IMAGE)])

    assert result.error.permanent and result.error.code == "too_long"
    assert viber_peer.requests == []


# --- errors -------------------------------------------------------------------------------

def test_a_receiver_not_registered_fails_permanently_and_its_siblings_are_sent(viber_peer):
    viber_peer.script.not_registered.add("viber-user-2=")

    results = _send(_gateway(viber_peer.gateway_settings()), [_message(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "receiverNotRegistered" and error.code in ACCOUNT_GONE_CODES
    assert sorted(s.receiver for s in viber_peer.sent) == ["viber-user-1=", "viber-user-3="]


def test_a_receiver_not_subscribed_fails_permanently_as_an_account_gone(viber_peer):
    viber_peer.script.not_subscribed.add("viber-user-1=")

    [result] = _send(_gateway(viber_peer.gateway_settings()), [_message(1)])

    assert result.error.permanent
    assert result.error.code == "notSubscribed" and result.error.code in ACCOUNT_GONE_CODES
    assert "Viber status 6" in result.error.message


def test_status_12_is_transient_with_the_throttle_wait_and_the_rest_of_the_batch_waits(
        viber_peer):
    viber_peer.script.rate_limited.add("viber-user-1=")
    gateway = _gateway(viber_peer.gateway_settings(concurrency=1, throttle_retry_after=3))

    results = _send(gateway, [_message(n) for n in (1, 2, 3)])

    first, *rest = (r.error for r in results)
    assert (first.code, first.permanent, first.retry_after) == ("tooManyRequests", False, 3)
    assert all(e.code == "tooManyRequests" and not e.permanent
               and e.message.startswith("not attempted") for e in rest)
    assert viber_peer.requests == [("viber-user-1=", 200)]


def test_http_429_is_transient_with_the_retry_after_header(viber_peer):
    viber_peer.script.throttled["viber-user-1="] = 17

    [result] = _send(_gateway(viber_peer.gateway_settings()), [_message(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert (result.error.code, result.error.retry_after) == ("HTTP_429", 17)


def test_http_503_is_transient_and_nothing_is_sent(viber_peer):
    viber_peer.script.unavailable.add("viber-user-1=")

    [result] = _send(_gateway(viber_peer.gateway_settings()), [_message(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "HTTP_503"
    assert viber_peer.sent == []


def test_a_wrong_auth_token_is_transient_and_stops_the_batch(viber_peer):
    settings = viber_peer.gateway_settings(auth_token="not-the-token", concurrency=1)

    results = _send(_gateway(settings), [_message(n) for n in (1, 2, 3)])

    assert [r.error.code for r in results] == ["invalidAuthToken"] * 3
    assert not any(r.error.permanent for r in results)
    assert len(viber_peer.requests) == 1


def test_a_message_left_unanswered_past_the_timeout_is_in_doubt(viber_peer):
    viber_peer.script.stalled.add("viber-user-2=")
    viber_peer.script.stall_seconds = 4

    results = _send(_gateway(viber_peer.gateway_settings(timeout=1)),
                    [_message(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    assert "viber-user-2=" in {s.receiver for s in viber_peer.sent}


def test_an_unreachable_endpoint_is_transient_and_nothing_is_in_doubt(viber_peer):
    settings = viber_peer.gateway_settings(base_url=f"http://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_message(n) for n in range(3)])

    assert all(not r.error.permanent and not r.error.in_doubt for r in results)
    assert results[0].error.code == "connect_failed"


def test_a_gateway_without_a_sender_name_is_refused_at_open(viber_peer):
    gateway = _gateway(viber_peer.gateway_settings(), sender="")

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent and error.value.code == "settings"


def test_the_health_probe_reads_the_account_with_the_token(viber_peer):
    assert _gateway(viber_peer.gateway_settings()).health() == (True, "account Engage Club answers")


def test_the_health_probe_reports_a_refused_token(viber_peer):
    ok, detail = _gateway(viber_peer.gateway_settings(auth_token="not-the-token")).health()

    assert not ok
    assert "invalidAuthToken" in detail


def test_the_health_probe_reports_an_unreachable_api(viber_peer):
    settings = viber_peer.gateway_settings(base_url=f"http://127.0.0.1:{free_port()}")

    ok, detail = _gateway(settings).health()

    assert not ok and "connect_failed" in detail


def test_the_peers_settings_pass_settings_errors(viber_peer):
    assert ViberGateway.settings_errors(viber_peer.gateway_settings()) == {}


def test_settings_errors_name_a_missing_token_a_bad_url_and_a_long_sender_name():
    errors = ViberGateway.settings_errors({"base_url": "chatapi.viber.com",
                                           "sender_name": "x" * 29})

    assert sorted(errors) == ["auth_token", "base_url", "sender_name"]


# --- callbacks ----------------------------------------------------------------------------

@pytest.fixture
def viber_gateway(viber_peer):
    return GatewayFactory(name="Viber partner", channel="viber", provider="viber",
                          settings=viber_peer.gateway_settings(), sender="Engage Club")


def _callback(client, gateway, viber_peer, event: str, **fields):
    body, headers = viber_peer.callback(event, **fields)
    return client.post(reverse("viber-callback", args=[gateway.pk]), body,
                       content_type="application/json", headers=headers)


def _sent_message(gateway, token: int) -> Message:
    return MessageFactory(gateway=gateway, channel="viber", provider_id=str(token),
                          status=Message.Status.SENT)


@pytest.mark.django_db
def test_a_delivered_callback_moves_the_message_it_names_to_delivered(
        client, viber_peer, viber_gateway):
    message = _sent_message(viber_gateway, FIRST_TOKEN)

    response = _callback(client, viber_gateway, viber_peer, "delivered",
                         message_token=FIRST_TOKEN, user_id="viber-user-1=")
    receipts_apply()

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


@pytest.mark.django_db
def test_a_seen_callback_marks_the_message_opened(client, viber_peer, viber_gateway):
    message = _sent_message(viber_gateway, FIRST_TOKEN)

    _callback(client, viber_gateway, viber_peer, "seen", message_token=FIRST_TOKEN,
              user_id="viber-user-1=")
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.OPENED


@pytest.mark.django_db
def test_a_failed_callback_marks_the_message_undelivered_with_vibers_reason(
        client, viber_peer, viber_gateway):
    _sent_message(viber_gateway, FIRST_TOKEN)

    _callback(client, viber_gateway, viber_peer, "failed", message_token=FIRST_TOKEN,
              user_id="viber-user-1=", desc="failure description")
    receipts_apply()

    receipt = ProviderReceipt.objects.get()
    assert (receipt.status, receipt.code, receipt.detail) == (
        "undelivered", "failed", "failure description")
    assert Message.objects.get().status == Message.Status.UNDELIVERED


@pytest.mark.django_db
def test_a_message_sent_through_the_peer_is_matched_by_its_callback(
        client, viber_peer, viber_gateway):
    [result] = _send(gateway_for(gateway_config(gateway=viber_gateway)), [_message(1)])
    message = _sent_message(viber_gateway, int(result.provider_id))

    _callback(client, viber_gateway, viber_peer, "delivered",
              message_token=viber_peer.sent[0].message_token, user_id="viber-user-1=")
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


@pytest.mark.django_db
def test_an_unsubscribed_callback_withdraws_the_members_viber_consent(
        client, viber_peer, viber_gateway):
    account = MessengerAccountFactory(network="viber", account_id="viber-user-9=")
    ConsentFactory(member=account.member, channel="viber",
                   recorded_at=timezone.now() - timedelta(days=1))

    response = _callback(client, viber_gateway, viber_peer, "unsubscribed",
                         user_id="viber-user-9=", message_token=FIRST_TOKEN)

    assert response.status_code == 200
    consent = Consent.objects.get(member=account.member, channel="viber")
    assert consent.state == Consent.State.WITHDRAWN
    event = ConsentEvent.objects.get(member=account.member)
    assert (event.action, event.source) == ("withdraw", "unsubscribe_link")
    assert "Viber partner" in event.user_agent


@pytest.mark.django_db
def test_an_unsubscribed_callback_for_an_unknown_viber_id_changes_nothing(
        client, viber_peer, viber_gateway):
    response = _callback(client, viber_gateway, viber_peer, "unsubscribed",
                         user_id="nobody-we-know=")

    assert response.status_code == 200
    assert not ConsentEvent.objects.exists()


@pytest.mark.django_db
def test_a_callback_signed_with_another_token_is_refused_with_403(
        client, viber_peer, viber_gateway):
    _sent_message(viber_gateway, FIRST_TOKEN)

    response = _callback(client, viber_gateway, viber_peer, "delivered",
                         message_token=FIRST_TOKEN, auth_token="a-guess")

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert not ProviderReceipt.objects.exists()


@pytest.mark.django_db
def test_an_unsigned_callback_is_refused_with_403(client, viber_gateway):
    response = client.post(reverse("viber-callback", args=[viber_gateway.pk]),
                           b'{"event": "delivered", "message_token": 1}',
                           content_type="application/json")

    assert response.status_code == 403


@pytest.mark.django_db
def test_a_signed_body_that_is_not_a_viber_event_is_refused_with_400(client, viber_peer,
                                                                     viber_gateway):
    body = b'{"event": "delivered"}'  # no message_token
    signature = callback_signature(auth_token=viber_peer.auth_token, body=body)

    response = client.post(reverse("viber-callback", args=[viber_gateway.pk]), body,
                           content_type="application/json",
                           headers={"X-Viber-Content-Signature": signature})

    assert response.status_code == 400
    assert response.json()["code"] == "bad_callback"


@pytest.mark.django_db
def test_events_engage_does_not_act_on_are_acknowledged_and_ignored(
        client, viber_peer, viber_gateway):
    response = _callback(client, viber_gateway, viber_peer, "conversation_started",
                         user_id="viber-user-1=")

    assert response.status_code == 200
    assert not ProviderReceipt.objects.exists() and not ConsentEvent.objects.exists()


@pytest.mark.django_db
def test_a_callback_for_another_providers_gateway_answers_404(client, viber_peer):
    smtp_gateway = GatewayFactory()

    response = _callback(client, smtp_gateway, viber_peer, "delivered", message_token=1)

    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_peer_posts_signed_callbacks_that_the_server_stores(live_server, viber_peer):
    gateway = GatewayFactory(channel="viber", provider="viber",
                             settings=viber_peer.gateway_settings())
    url = live_server.url + reverse("viber-callback", args=[gateway.pk])

    status, _ = viber_peer.post_callback(url, "delivered", message_token=FIRST_TOKEN,
                                         user_id="viber-user-1=")

    assert status == 200
    assert ProviderReceipt.objects.filter(gateway=gateway, provider_id=str(FIRST_TOKEN),
                                          status="delivered").exists()
