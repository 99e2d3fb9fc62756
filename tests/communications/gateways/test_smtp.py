from __future__ import annotations

from decimal import Decimal

import pytest

from communications.gateways import GatewayConfig, GatewayError, OutboundMessage, gateway_for
from tests.peers.smtp import free_port


def _gateway(settings: dict):
    return gateway_for(GatewayConfig(
        gateway_id=7, channel="email", provider="smtp", settings=settings,
        sender="Club <club@engage.example.com>", price_per_message=Decimal("0.001"),
    ))


def _outbound(n: int, **fields) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=f"m{n}@members.example.com",
                           subject=f"Subject {n}", body=f"Body {n}", **fields)


def test_a_batch_goes_through_one_smtp_session(smtp_peer):
    gateway = _gateway(smtp_peer.gateway_settings())

    gateway.open()
    results = gateway.send([_outbound(n) for n in range(5)])
    gateway.close()

    assert all(r.ok for r in results)
    assert len(smtp_peer.received) == 5
    assert smtp_peer.handler.sessions == 1


def test_each_email_carries_a_message_id_that_maps_back_to_the_message(smtp_peer):
    gateway = _gateway(smtp_peer.gateway_settings())

    gateway.open()
    [result] = gateway.send([_outbound(42)])
    gateway.close()

    header = smtp_peer.received[0].message["Message-ID"]
    assert header == result.provider_id
    assert header.startswith("<engage.42.7@")


def test_html_body_is_sent_as_an_alternative(smtp_peer):
    gateway = _gateway(smtp_peer.gateway_settings())

    gateway.open()
    gateway.send([_outbound(1, html_body="<p>Hi</p>")])
    gateway.close()

    email = smtp_peer.received[0].message
    assert email.get_body(("html",)).get_content().strip() == "<p>Hi</p>"
    assert email.get_body(("plain",)).get_content().strip() == "Body 1"


def test_refused_recipient_fails_with_the_servers_reply_and_the_rest_are_sent(smtp_peer):
    smtp_peer.handler.refuse.add("m2@members.example.com")
    gateway = _gateway(smtp_peer.gateway_settings())

    gateway.open()
    results = gateway.send([_outbound(n) for n in (1, 2, 3)])
    gateway.close()

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent
    assert error.code == "550"
    assert "User unknown" in error.message
    assert sorted(r.rcpt_tos[0] for r in smtp_peer.received) == [
        "m1@members.example.com", "m3@members.example.com"
    ]


def test_sent_messages_cost_the_gateway_price(smtp_peer):
    gateway = _gateway(smtp_peer.gateway_settings())

    gateway.open()
    [result] = gateway.send([_outbound(1)])
    gateway.close()

    assert result.cost == Decimal("0.001")


def test_unreachable_server_is_a_transient_error():
    gateway = _gateway({"host": "127.0.0.1", "port": free_port(), "timeout": 2})

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert not error.value.permanent
