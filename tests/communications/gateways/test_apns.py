from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    apns,
    gateway_for,
)
from communications.gateways.apns import DEAD_TOKEN_CODES, THROTTLE_RETRY_AFTER, ApnsGateway
from tests.peers.apns import ApnsPeer
from tests.peers.smtp import free_port


@pytest.fixture
def apns_peer() -> Iterator[ApnsPeer]:
    peer = ApnsPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 61) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="push", provider="apns", settings=settings, sender="",
        price_per_message=Decimal("0.0003"),
    ))


def _token(n: int) -> str:
    return f"{n:064x}"


def _push(n: int, token: str | None = None) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=token or _token(n),
                           subject=f"Offer {n}", body=f"Your points, member {n}")


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


# --- what reaches APNs ------------------------------------------------------------------------

def test_a_batch_reaches_apns_with_each_title_body_and_message_id(apns_peer):
    _send(_gateway(apns_peer.gateway_settings()), [_push(n) for n in range(1, 6)])

    received = sorted(apns_peer.received, key=lambda pushed: pushed.token)
    assert [(p.token, p.aps["alert"], p.payload["engage_message_id"]) for p in received] == [
        (_token(n), {"title": f"Offer {n}", "body": f"Your points, member {n}"}, str(n))
        for n in range(1, 6)
    ]


def test_a_push_carries_its_image_deep_link_and_the_templates_data(apns_peer):
    push = OutboundMessage(message_id=7, address=_token(7), subject="Offer", body="Tap",
                           image_url="https://cdn.example.com/autumn.jpg",
                           link_url="myapp://offers/7", data={"offer_id": "7"})

    _send(_gateway(apns_peer.gateway_settings()), [push])

    [pushed] = apns_peer.received
    assert pushed.aps == {"alert": {"title": "Offer", "body": "Tap"}, "mutable-content": 1}
    assert {key: value for key, value in pushed.payload.items() if key != "aps"} == {
        "offer_id": "7", "link": "myapp://offers/7",
        "image": "https://cdn.example.com/autumn.jpg", "engage_message_id": "7"}


def test_a_push_without_an_image_asks_for_no_service_extension(apns_peer):
    _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    [pushed] = apns_peer.received
    assert "mutable-content" not in pushed.aps
    assert "image" not in pushed.payload


def test_each_push_names_the_topic_push_type_priority_and_expiration(apns_peer):
    before = int(time.time())

    _send(_gateway(apns_peer.gateway_settings(priority=5, time_to_live=3600)), [_push(1)])

    [pushed] = apns_peer.received
    assert (pushed.headers["apns-topic"], pushed.headers["apns-push-type"],
            pushed.headers["apns-priority"]) == ("club.engage.app", "alert", "5")
    assert before + 3600 <= int(pushed.headers["apns-expiration"]) <= time.time() + 3600


def test_results_come_back_in_batch_order_with_the_apns_id_of_each_message(apns_peer):
    results = _send(_gateway(apns_peer.gateway_settings(concurrency=8)),
                    [_push(n) for n in range(1, 31)])

    apns_id_by_token = {pushed.token: pushed.apns_id for pushed in apns_peer.received}
    assert [r.message_id for r in results] == list(range(1, 31))
    assert [r.provider_id for r in results] == [apns_id_by_token[_token(n)]
                                                for n in range(1, 31)]
    assert results[29].provider_id == "00000000-0000-8000-8000-00000000001e"


def test_sent_pushes_cost_the_gateway_price(apns_peer):
    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert result.cost == Decimal("0.0003")


def test_a_batch_goes_over_one_connection_with_many_streams_in_flight(apns_peer):
    apns_peer.script.stalled.update(_token(n) for n in range(10))
    apns_peer.script.stall_seconds = 0.5

    results = _send(_gateway(apns_peer.gateway_settings(concurrency=10)),
                    [_push(n) for n in range(40)])

    assert all(r.ok for r in results)
    assert apns_peer.connections == 1
    assert apns_peer.most_unanswered == 10


# --- the provider token -------------------------------------------------------------------

def test_the_provider_token_is_signed_once_for_two_batches(apns_peer):
    settings = apns_peer.gateway_settings()

    # Each batch gets its own adapter instance, as a worker builds one per batch.
    first = _send(_gateway(settings, gateway_id=71), [_push(1)])
    second = _send(_gateway(settings, gateway_id=71), [_push(2)])

    assert first[0].ok and second[0].ok
    assert apns_peer.provider_tokens == 1


def test_the_provider_token_carries_the_key_id_team_id_and_time_it_was_signed(apns_peer):
    _send(_gateway(apns_peer.gateway_settings(), gateway_id=72), [_push(1)])

    bearer = apns_peer.received[0].headers["authorization"].removeprefix("bearer ")
    assert jwt.get_unverified_header(bearer)["kid"] == apns_peer.key_id
    claims = jwt.decode(bearer, options={"verify_signature": False})
    assert claims["iss"] == apns_peer.team_id
    assert time.time() - 60 < claims["iat"] <= time.time()


def test_a_provider_token_fifty_minutes_old_is_renewed_at_the_next_open(apns_peer):
    settings = apns_peer.gateway_settings()
    _send(_gateway(settings, gateway_id=73), [_push(1)])
    cached = apns._PROVIDER_TOKENS[73]
    apns._PROVIDER_TOKENS[73] = dataclasses.replace(cached, issued_at=cached.issued_at - 50 * 60)

    [result] = _send(_gateway(settings, gateway_id=73), [_push(2)])

    assert result.ok
    assert apns_peer.provider_tokens == 2
    assert apns._PROVIDER_TOKENS[73].jwt != cached.jwt


def test_an_expired_provider_token_is_renewed_once_and_the_pushes_sent(apns_peer):
    gateway = _gateway(apns_peer.gateway_settings(concurrency=5), gateway_id=74)
    gateway.open()
    try:
        gateway.send([_push(0)])
        apns_peer.expire_provider_tokens()

        results = gateway.send([_push(n) for n in range(1, 11)])
    finally:
        gateway.close()

    assert all(r.ok for r in results)
    assert apns_peer.provider_tokens == 2
    assert len(apns_peer.received) == 11


def test_a_provider_token_still_expired_after_its_renewal_is_not_renewed_again(apns_peer):
    gateway = _gateway(apns_peer.gateway_settings(concurrency=1), gateway_id=75)
    gateway.open()
    try:
        gateway.send([_push(0)])
        apns_peer.expire_provider_tokens()
        gateway.send([_push(1)])  # renews the token
        apns_peer.expire_provider_tokens()

        results = gateway.send([_push(n) for n in range(2, 5)])
    finally:
        gateway.close()

    assert [r.error.code for r in results] == ["ExpiredProviderToken"] * 3
    assert not results[0].error.permanent
    assert results[1].error.message.startswith("not attempted")
    assert apns_peer.provider_tokens == 2


def test_a_key_apns_does_not_know_stops_the_batch_with_a_transient_error(apns_peer):
    stranger = _pem(ec.generate_private_key(ec.SECP256R1()))
    settings = apns_peer.gateway_settings(private_key=stranger, concurrency=1)

    results = _send(_gateway(settings, gateway_id=76), [_push(n) for n in range(3)])

    assert [r.error.code for r in results] == ["InvalidProviderToken"] * 3
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)
    assert [r.error.message.startswith("not attempted") for r in results] == [False, True, True]
    assert apns_peer.requests == 1


# --- what APNs answers about a device or a payload -------------------------------------------

def test_bad_device_token_fails_permanently_and_its_siblings_are_sent(apns_peer):
    apns_peer.script.bad_token.add(_token(2))

    results = _send(_gateway(apns_peer.gateway_settings()), [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.permanent and not results[1].error.in_doubt
    assert results[1].error.code == "BadDeviceToken"
    assert results[1].error.code in DEAD_TOKEN_CODES
    assert sorted(p.token for p in apns_peer.received) == [_token(1), _token(3)]


def test_an_unregistered_token_is_a_dead_address_with_the_time_apns_gave(apns_peer):
    apns_peer.script.unregistered.add(_token(1))

    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert result.error.permanent
    assert result.error.code == "Unregistered"
    assert result.error.code in DEAD_TOKEN_CODES
    assert result.error.message.startswith("410 Unregistered, the device token invalid since ")


def test_a_device_token_of_another_app_is_a_dead_address(apns_peer):
    apns_peer.script.other_app.add(_token(1))

    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert result.error.permanent
    assert result.error.code == "DeviceTokenNotForTopic"
    assert result.error.code in DEAD_TOKEN_CODES


def test_an_address_that_cannot_be_a_device_token_fails_without_a_request(apns_peer):
    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1, "../../3/device?x=1")])

    assert result.error.permanent
    assert result.error.code == "BadDeviceToken"
    assert apns_peer.requests == 0


def test_an_oversized_push_is_a_permanent_error_that_keeps_the_device(apns_peer):
    huge = OutboundMessage(message_id=1, address=_token(1), subject="Offer", body="x" * 5000)

    [result] = _send(_gateway(apns_peer.gateway_settings()), [huge])

    assert result.error.permanent
    assert result.error.code == "PayloadTooLarge"
    assert result.error.code not in DEAD_TOKEN_CODES


def test_a_topic_apns_does_not_allow_is_a_permanent_error_that_keeps_the_device(apns_peer):
    [result] = _send(_gateway(apns_peer.gateway_settings(topic="club.other.app")), [_push(1)])

    assert result.error.permanent
    assert result.error.code == "TopicDisallowed"
    assert result.error.code not in DEAD_TOKEN_CODES


def test_too_many_requests_is_transient_and_waits_a_minute_without_retry_after(apns_peer):
    apns_peer.script.throttled[_token(1)] = None

    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "TooManyRequests"
    assert result.error.retry_after == THROTTLE_RETRY_AFTER


def test_a_retry_after_apns_sends_is_kept(apns_peer):
    apns_peer.script.throttled[_token(1)] = 37

    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert result.error.retry_after == 37


@pytest.mark.parametrize(("script", "code"), [("unavailable", "ServiceUnavailable"),
                                              ("failing", "InternalServerError")])
def test_an_apns_server_error_is_transient(apns_peer, script, code):
    getattr(apns_peer.script, script).add(_token(1))

    [result] = _send(_gateway(apns_peer.gateway_settings()), [_push(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == code
    assert apns_peer.received == []


# --- no answer --------------------------------------------------------------------------------

def test_a_push_left_unanswered_past_the_timeout_is_in_doubt(apns_peer):
    apns_peer.script.stalled.add(_token(2))
    apns_peer.script.stall_seconds = 4

    results = _send(_gateway(apns_peer.gateway_settings(timeout=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True], [str(r.error) for r in results]
    assert results[1].error.in_doubt and not results[1].error.permanent
    # APNs did take it: resending would push it twice.
    assert _token(2) in {p.token for p in apns_peer.received}


def test_a_push_whose_connection_drops_unanswered_is_in_doubt_and_never_sent_twice(apns_peer):
    # libcurl on its own would send it again on a fresh connection: the peer saw it twice.
    apns_peer.script.dropped.add(_token(2))

    results = _send(_gateway(apns_peer.gateway_settings(concurrency=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    assert sorted(p.token for p in apns_peer.received) == [_token(1), _token(2), _token(3)]


def test_an_unreachable_endpoint_is_transient_and_nothing_is_in_doubt(apns_peer):
    settings = apns_peer.gateway_settings(endpoint=f"https://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert all(not r.error.permanent and not r.error.in_doubt for r in results)
    assert results[0].error.code == "connect_failed"


def test_the_rest_of_a_batch_after_apns_could_not_be_reached_gets_no_result(apns_peer):
    settings = apns_peer.gateway_settings(endpoint=f"https://127.0.0.1:{free_port()}",
                                          concurrency=1)

    results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert [(r.message_id, r.error.code) for r in results] == [(0, "connect_failed")]


def test_a_tls_handshake_past_the_connect_timeout_is_transient_and_nothing_is_in_doubt(
        apns_peer):
    # A listener that takes the TCP connection and never says a word of TLS.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        settings = apns_peer.gateway_settings(
            endpoint=f"https://127.0.0.1:{mute.getsockname()[1]}", connect_timeout=0.5)

        results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert all(not r.error.permanent and not r.error.in_doubt for r in results)
    assert {r.error.code for r in results} == {"connect_failed"}


def test_a_server_whose_certificate_is_not_trusted_gets_no_push(apns_peer):
    settings = apns_peer.gateway_settings()
    del settings["ca_file"]  # the public CAs do not know the peer's test CA

    results = _send(_gateway(settings), [_push(1)])

    assert results[0].error.code == "connect_failed"
    assert "unable to get local issuer certificate" in results[0].error.message  # OpenSSL's
    assert apns_peer.requests == 0


# --- settings and health ----------------------------------------------------------------------

def test_the_peers_settings_pass_settings_errors(apns_peer):
    assert ApnsGateway.settings_errors(apns_peer.gateway_settings()) == {}


def test_settings_errors_name_each_bad_setting(tmp_path):
    errors = ApnsGateway.settings_errors({
        "team_id": "team", "key_id": "ABC", "private_key": _pem(rsa.generate_private_key(
            public_exponent=65537, key_size=2048)),
        "topic": "", "endpoint": "http://api.push.apple.com",
        "ca_file": str(tmp_path / "missing.pem"), "concurrency": 0, "timeout": -1,
        "priority": 7, "time_to_live": -5,
    })

    assert sorted(errors) == ["ca_file", "concurrency", "endpoint", "key_id", "priority",
                              "private_key", "team_id", "time_to_live", "timeout", "topic"]
    assert errors["private_key"] == "must be a P-256 (ES256) key, as Apple issues for APNs"


def test_settings_errors_require_the_credentials_and_the_topic():
    assert sorted(ApnsGateway.settings_errors({})) == ["key_id", "private_key", "team_id",
                                                       "topic"]


def test_open_refuses_bad_settings_with_a_permanent_error_naming_them(apns_peer):
    gateway = _gateway(apns_peer.gateway_settings(key_id="short"))

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent and error.value.code == "settings"
    assert "key_id: required: the 10-character Key ID" in error.value.message


def test_health_reports_the_tls_and_http2_handshake_and_the_signed_token(apns_peer):
    ok, text = _gateway(apns_peer.gateway_settings()).health()

    assert ok
    assert text == (f"TLS and HTTP/2 with 127.0.0.1:{apns_peer.port} (up to 1000 streams per "
                    f"connection); provider token signed by key {apns_peer.key_id} for team "
                    f"{apns_peer.team_id}")
    assert apns_peer.connections == 1 and apns_peer.requests == 0


def test_health_fails_on_a_certificate_it_cannot_trust(apns_peer):
    settings = apns_peer.gateway_settings()
    del settings["ca_file"]

    ok, text = _gateway(settings).health()

    assert not ok
    assert "CERTIFICATE_VERIFY_FAILED" in text


def test_health_fails_on_an_unreachable_endpoint(apns_peer):
    settings = apns_peer.gateway_settings(endpoint=f"https://127.0.0.1:{free_port()}")

    ok, text = _gateway(settings).health()

    assert not ok
    assert text.startswith("transient: no HTTP/2 over TLS with 127.0.0.1:")


def test_health_names_a_bad_setting():
    ok, text = _gateway({"team_id": "ABCDE12345"}).health()

    assert not ok
    assert text.startswith("permanent [settings]: invalid apns settings: key_id:")
