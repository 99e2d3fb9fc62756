from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.fcm import TOKEN_INVALID_CODES, FcmGateway
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import free_port


@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    peer = FcmPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 21) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="push", provider="fcm", settings=settings, sender="",
        price_per_message=Decimal("0.0002"),
    ))


def _push(n: int, token: str | None = None) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=token or f"device-{n}",
                           subject=f"Offer {n}", body=f"Your points, member {n}")


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


def test_a_batch_reaches_fcm_with_title_body_and_message_id(fcm_peer):
    _send(_gateway(fcm_peer.gateway_settings()), [_push(n) for n in range(1, 6)])

    received = sorted(fcm_peer.received, key=lambda pushed: pushed.token)
    assert [(p.token, p.title, p.body, p.data) for p in received] == [
        (f"device-{n}", f"Offer {n}", f"Your points, member {n}", {"engage_message_id": str(n)})
        for n in range(1, 6)
    ]


def test_a_push_carries_its_image_deep_link_and_the_templates_data(fcm_peer):
    push = OutboundMessage(message_id=7, address="device-7", subject="Offer", body="Tap",
                           image_url="https://cdn.example.com/autumn.jpg",
                           link_url="myapp://offers/7", data={"offer_id": "7"})

    _send(_gateway(fcm_peer.gateway_settings()), [push])

    [pushed] = fcm_peer.received
    assert pushed.image == "https://cdn.example.com/autumn.jpg"
    assert pushed.data == {"offer_id": "7", "link": "myapp://offers/7",
                           "image": "https://cdn.example.com/autumn.jpg",
                           "engage_message_id": "7"}


def test_results_come_back_in_batch_order_with_fcms_message_names(fcm_peer):
    results = _send(_gateway(fcm_peer.gateway_settings(concurrency=8)),
                    [_push(n) for n in range(1, 31)])

    name_by_token = {pushed.token: pushed.name for pushed in fcm_peer.received}
    assert [r.message_id for r in results] == list(range(1, 31))
    assert [r.provider_id for r in results] == [name_by_token[f"device-{n}"] for n in range(1, 31)]
    assert all(r.provider_id.startswith("projects/engage-test/messages/") for r in results)


def test_sent_pushes_cost_the_gateway_price(fcm_peer):
    [result] = _send(_gateway(fcm_peer.gateway_settings()), [_push(1)])

    assert result.cost == Decimal("0.0002")


def test_a_batch_goes_over_no_more_connections_than_its_concurrency(fcm_peer):
    results = _send(_gateway(fcm_peer.gateway_settings(concurrency=4)),
                    [_push(n) for n in range(40)])

    assert all(r.ok for r in results)
    assert 1 <= fcm_peer.connections <= 4


def test_the_access_token_is_fetched_once_for_two_batches(fcm_peer):
    settings = fcm_peer.gateway_settings()

    # Each batch gets its own adapter instance, as a worker builds one per batch.
    first = _send(_gateway(settings, gateway_id=31), [_push(1)])
    second = _send(_gateway(settings, gateway_id=31), [_push(2)])

    assert first[0].ok and second[0].ok
    assert fcm_peer.token_grants == 1


def test_unregistered_token_fails_permanently_and_its_siblings_are_sent(fcm_peer):
    fcm_peer.script.unregistered.add("device-2")

    results = _send(_gateway(fcm_peer.gateway_settings()), [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "UNREGISTERED"
    assert error.code in TOKEN_INVALID_CODES
    assert sorted(p.token for p in fcm_peer.received) == ["device-1", "device-3"]


def test_a_registration_token_fcm_calls_invalid_is_a_token_invalid_code(fcm_peer):
    fcm_peer.script.invalid.add("device-1")

    [result] = _send(_gateway(fcm_peer.gateway_settings()), [_push(1)])

    assert result.error.permanent
    assert result.error.code == "INVALID_TOKEN"
    assert result.error.code in TOKEN_INVALID_CODES
    assert "not a valid FCM registration token" in result.error.message


def test_an_oversized_push_is_a_permanent_error_that_keeps_the_device(fcm_peer):
    huge = OutboundMessage(message_id=1, address="device-1", subject="Offer", body="x" * 5000)

    [result] = _send(_gateway(fcm_peer.gateway_settings()), [huge])

    assert result.error.permanent
    assert result.error.code == "INVALID_ARGUMENT"
    assert result.error.code not in TOKEN_INVALID_CODES


def test_quota_exceeded_is_transient_with_the_retry_after(fcm_peer):
    fcm_peer.script.throttled["device-1"] = 37

    [result] = _send(_gateway(fcm_peer.gateway_settings()), [_push(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "QUOTA_EXCEEDED"
    assert result.error.retry_after == 37


def test_unavailable_is_transient(fcm_peer):
    fcm_peer.script.unavailable.add("device-1")

    [result] = _send(_gateway(fcm_peer.gateway_settings()), [_push(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "UNAVAILABLE"
    assert fcm_peer.received == []


def test_a_rejected_access_token_is_refreshed_once_and_the_pushes_sent(fcm_peer):
    gateway = _gateway(fcm_peer.gateway_settings(concurrency=5))
    gateway.open()
    try:
        gateway.send([_push(0)])
        fcm_peer.expire_access_tokens()

        results = gateway.send([_push(n) for n in range(1, 11)])
    finally:
        gateway.close()

    assert all(r.ok for r in results)
    assert fcm_peer.token_grants == 2
    assert len(fcm_peer.received) == 11


def test_a_refresh_the_token_endpoint_refuses_fails_the_batch_after_one_try(fcm_peer):
    gateway = _gateway(fcm_peer.gateway_settings(concurrency=2))
    gateway.open()
    try:
        fcm_peer.expire_access_tokens()
        fcm_peer.script.refuse_grants = True

        results = gateway.send([_push(n) for n in range(6)])
    finally:
        gateway.close()

    assert all(not r.ok for r in results)
    assert results[0].error.code == "oauth_refused"
    assert fcm_peer.token_refusals == 1
    assert fcm_peer.received == []


def test_a_push_left_unanswered_past_the_timeout_is_in_doubt(fcm_peer):
    fcm_peer.script.stalled.add("device-2")
    fcm_peer.script.stall_seconds = 4

    results = _send(_gateway(fcm_peer.gateway_settings(timeout=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    # The provider did take it: resending would push it twice.
    assert "device-2" in {p.token for p in fcm_peer.received}


def test_an_unreachable_fcm_endpoint_is_transient_and_nothing_is_in_doubt(fcm_peer):
    settings = fcm_peer.gateway_settings(endpoint=f"http://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert all(not r.ok for r in results)
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


def test_the_rest_of_a_batch_after_fcm_refused_the_connection_gets_no_result(fcm_peer):
    settings = fcm_peer.gateway_settings(endpoint=f"http://127.0.0.1:{free_port()}",
                                         concurrency=1)

    results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert [(r.message_id, r.error.code) for r in results] == [(0, "connect_failed")]


def test_a_service_account_the_token_endpoint_does_not_know_is_refused_at_open(fcm_peer):
    settings = fcm_peer.gateway_settings()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings["service_account"]["private_key"] = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    gateway = _gateway(settings)

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent
    assert error.value.code == "oauth_refused"
    assert "Invalid JWT Signature" in error.value.message
    assert fcm_peer.token_refusals == 1


def test_the_peers_service_account_passes_settings_errors(fcm_peer):
    assert FcmGateway.settings_errors(fcm_peer.gateway_settings()) == {}


def test_a_private_key_that_does_not_parse_is_refused_by_settings_errors(fcm_peer):
    settings = fcm_peer.gateway_settings()
    settings["service_account"]["private_key"] = (
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    )

    errors = FcmGateway.settings_errors(settings)

    assert list(errors) == ["service_account.private_key"]
    assert "does not parse as a PEM private key" in errors["service_account.private_key"]


def test_settings_errors_name_each_missing_service_account_field():
    errors = FcmGateway.settings_errors({"service_account": {"token_uri": "not a url"}})

    assert sorted(errors) == [
        "service_account.client_email", "service_account.private_key",
        "service_account.project_id", "service_account.token_uri",
    ]


def test_settings_errors_refuse_a_missing_service_account_and_a_bad_concurrency():
    errors = FcmGateway.settings_errors({"concurrency": 0, "endpoint": "fcm.googleapis.com"})

    assert sorted(errors) == ["concurrency", "endpoint", "service_account"]


def test_service_account_fields_may_sit_at_the_top_level_of_the_settings(fcm_peer):
    settings = {**fcm_peer.service_account_info(), "endpoint": fcm_peer.url}

    [result] = _send(_gateway(settings), [_push(1)])

    assert FcmGateway.settings_errors(settings) == {}
    assert result.ok
