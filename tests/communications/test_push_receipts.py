"""Push Kit's message receipts through the real webhook: authenticated by the callback user name
and key, stored, and applied to the messages they name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.urls import reverse

from communications.gateways import GatewayConfig, OutboundMessage, gateway_for
from communications.models import Message, ProviderReceipt
from communications.services.statuses import receipts_apply
from tests.communications.factories import GatewayFactory, MessageFactory
from tests.peers.hms import HmsPeer, Pushed

pytestmark = pytest.mark.django_db


@pytest.fixture
def hms_peer() -> Iterator[HmsPeer]:
    peer = HmsPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def hms_gateway(hms_peer):
    return GatewayFactory(name="Push Kit", channel="push", provider="hms",
                          settings=hms_peer.gateway_settings(), sender="")


def _pushed(request_id: str = "17000000000000000001", message_id: int = 1) -> Pushed:
    return Pushed(token=f"hms-token-{message_id}", title="Offer", body="Tap", image=None,
                  click_action={"type": 3}, data_text="{}", bi_tag=str(message_id),
                  request_id=request_id)


def _sent_message(gateway, request_id: str = "17000000000000000001") -> Message:
    return MessageFactory(gateway=gateway, channel="push", provider_id=request_id,
                          status=Message.Status.SENT)


def _post(client, gateway, body: bytes, headers: dict[str, str]):
    return client.post(reverse("hms-receipts", args=[gateway.pk]), body,
                       content_type="application/json", headers=headers)


def _receipt(client, gateway, hms_peer, *statuses: dict, **signing):
    body, headers = hms_peer.receipt(list(statuses), **signing)
    return _post(client, gateway, body, headers)


def test_a_delivered_status_moves_the_message_it_names_to_delivered(client, hms_peer,
                                                                    hms_gateway):
    message = _sent_message(hms_gateway)

    response = _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 0))
    receipts_apply()

    assert response.status_code == 200
    assert response.json() == {"errno": "0", "errmsg": "success", "accepted": 1, "ignored": 0}
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_an_undelivered_status_marks_the_message_undelivered_with_push_kits_reason(
        client, hms_peer, hms_gateway):
    message = _sent_message(hms_gateway)

    _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 10))
    receipts_apply()

    receipt = ProviderReceipt.objects.get()
    assert (receipt.status, receipt.code) == ("undelivered", "10")
    assert receipt.detail == "the device has not been online for 30 days (biTag 1)"
    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED


def test_one_call_reports_on_several_messages(client, hms_peer, hms_gateway):
    delivered = _sent_message(hms_gateway, "1001")
    undelivered = _sent_message(hms_gateway, "1002")

    _receipt(client, hms_gateway, hms_peer,
             hms_peer.receipt_status(_pushed("1001", 1), 0),
             hms_peer.receipt_status(_pushed("1002", 2), 6))
    receipts_apply()

    delivered.refresh_from_db()
    undelivered.refresh_from_db()
    assert (delivered.status, undelivered.status) == (Message.Status.DELIVERED,
                                                      Message.Status.UNDELIVERED)


def test_a_push_sent_through_the_peer_is_matched_by_its_receipt(client, hms_peer, hms_gateway):
    adapter = gateway_for(GatewayConfig(
        gateway_id=hms_gateway.pk, channel="push", provider="hms",
        settings=hms_gateway.adapter_settings(), sender="", price_per_message=Decimal(0)))
    adapter.open()
    try:
        [result] = adapter.send([OutboundMessage(message_id=5, address="hms-token-5",
                                                 subject="Offer", body="Tap")])
    finally:
        adapter.close()
    message = _sent_message(hms_gateway, result.provider_id)

    _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(hms_peer.received[0], 0))
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_a_held_status_leaves_the_message_sent(client, hms_peer, hms_gateway):
    message = _sent_message(hms_gateway)

    response = _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 201))
    receipts_apply()

    assert response.json()["ignored"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_call_without_the_callback_id_header_is_refused_with_401(client, hms_peer,
                                                                   hms_gateway):
    body, _ = hms_peer.receipt([hms_peer.receipt_status(_pushed(), 0)])

    response = _post(client, hms_gateway, body, {})

    assert response.status_code == 401
    assert not ProviderReceipt.objects.exists()


def test_a_call_signed_with_another_callback_key_is_refused_with_403(client, hms_peer,
                                                                     hms_gateway):
    response = _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 0),
                        callback_key="a-guess")

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert not ProviderReceipt.objects.exists()


def test_a_call_signed_for_another_callback_user_is_refused_with_403(client, hms_peer,
                                                                     hms_gateway):
    response = _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 0),
                        callback_user="someone-else")

    assert response.status_code == 403


def test_a_callback_id_replayed_after_five_minutes_is_refused_with_403(client, hms_peer,
                                                                       hms_gateway):
    response = _receipt(client, hms_gateway, hms_peer, hms_peer.receipt_status(_pushed(), 0),
                        timestamp=int((time.time() - 400) * 1000))

    assert response.status_code == 403


def test_a_gateway_without_callback_settings_takes_no_receipts(client, hms_peer):
    settings = hms_peer.gateway_settings()
    del settings["callback_user"], settings["inbound_secret"]
    gateway = GatewayFactory(channel="push", provider="hms", settings=settings, sender="")

    response = _receipt(client, gateway, hms_peer, hms_peer.receipt_status(_pushed(), 0))

    assert response.status_code == 403
    assert response.json()["code"] == "inbound_not_configured"


def test_an_authentic_call_that_is_not_a_receipt_is_refused_with_400(client, hms_peer,
                                                                     hms_gateway):
    _, headers = hms_peer.receipt([])

    response = _post(client, hms_gateway, b'{"statuses": [{"status": 0}]}', headers)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_receipt"
    assert not ProviderReceipt.objects.exists()


def test_a_receipt_for_another_providers_gateway_answers_404(client, hms_peer):
    response = _receipt(client, GatewayFactory(), hms_peer, hms_peer.receipt_status(_pushed()))

    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_peer_posts_receipts_that_the_server_stores(live_server, hms_peer):
    gateway = GatewayFactory(channel="push", provider="hms", settings=hms_peer.gateway_settings(),
                             sender="")
    url = live_server.url + reverse("hms-receipts", args=[gateway.pk])

    status, _ = hms_peer.post_receipts(url, [hms_peer.receipt_status(_pushed(), 0)])

    assert status == 200
    assert ProviderReceipt.objects.filter(gateway=gateway, provider_id="17000000000000000001",
                                          status="delivered").exists()
