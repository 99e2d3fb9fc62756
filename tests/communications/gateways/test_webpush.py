"""The Web Push adapter against a push service on loopback that decrypts what it is sent as
the browser would (tests/peers/webpush.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from communications.gateways import (
    GATEWAYS,
    BaseGateway,
    GatewayConfig,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.webpush import (
    DEAD_SUBSCRIPTION_CODES,
    WebPushGateway,
    webpush_subscription_errors,
)
from communications.gateways.webpush_crypto import aes128gcm_encrypt
from config.ssrf import PrivateAddressRefused, PublicAddressResolver, address_is_public
from members.services.devices import b64url_decode
from tests.peers.smtp import free_port
from tests.peers.webpush import Browser, WebPushPeer


@pytest.fixture
def peer() -> Iterator[WebPushPeer]:
    peer = WebPushPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 61) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="push", provider="webpush", settings=settings, sender="",
        price_per_message=Decimal("0.0001"),
    ))


def _push(n: int, subscription: str, **fields) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=subscription, subject=f"Offer {n}",
                           body=f"Your points, member {n}", **fields)


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# The user agent's public key and auth secret of RFC 8291's example (section 5).
RFC8291_P256DH = ("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6"
                  "SRpkNtoIAiw4")
RFC8291_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
# The rest of that example: the user agent's private key, the application server's key pair
# and salt, and the push body they make of the plaintext.
RFC8291_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC8291_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC8291_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC8291_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC8291_BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCY"
                "LocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXL"
                "WyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def _p256_key(base64url: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(base64url), "big"),
                                 ec.SECP256R1())


def _subscription(endpoint: str, **keys: str) -> str:
    return json.dumps({"endpoint": endpoint,
                       "keys": {"p256dh": RFC8291_P256DH, "auth": RFC8291_AUTH, **keys}})


# --- sending ------------------------------------------------------------------------------

def test_the_adapter_is_registered_for_push():
    assert GATEWAYS["webpush"] is WebPushGateway
    assert WebPushGateway.channels == frozenset({"push"})


def test_the_browser_decrypts_title_body_image_link_and_data_with_the_message_id(peer):
    push = _push(7, peer.subscription(1), image_url="https://cdn.example.com/autumn.jpg",
                 link_url="https://club.example.com/offers/7", data={"offer_id": "7"})

    [result] = _send(_gateway(peer.gateway_settings()), [push])

    assert result.ok
    [pushed] = peer.received
    assert pushed.payload == {
        "title": "Offer 7", "body": "Your points, member 7",
        "image": "https://cdn.example.com/autumn.jpg",
        "link": "https://club.example.com/offers/7",
        "data": {"offer_id": "7", "link": "https://club.example.com/offers/7",
                 "image": "https://cdn.example.com/autumn.jpg", "engage_message_id": "7"}}


def test_a_push_without_image_or_link_carries_title_body_and_the_message_id(peer):
    _send(_gateway(peer.gateway_settings()), [_push(3, peer.subscription(1))])

    [pushed] = peer.received
    assert pushed.payload == {"title": "Offer 3", "body": "Your points, member 3",
                              "data": {"engage_message_id": "3"}}


def test_each_push_is_encrypted_for_its_own_subscription(peer):
    batch = [_push(n, peer.subscription(n)) for n in range(1, 6)]

    results = _send(_gateway(peer.gateway_settings(concurrency=3)), batch)

    assert all(r.ok for r in results)
    assert sorted((p.subscription_id, p.payload["title"]) for p in peer.received) == [
        (str(n), f"Offer {n}") for n in range(1, 6)]


def test_results_come_back_in_batch_order_with_the_push_messages_locations(peer):
    batch = [_push(n, peer.subscription(n)) for n in range(1, 21)]

    results = _send(_gateway(peer.gateway_settings(concurrency=4)), batch)

    location = {p.subscription_id: p.location for p in peer.received}
    assert [r.message_id for r in results] == list(range(1, 21))
    assert [r.provider_id for r in results] == [location[str(n)] for n in range(1, 21)]
    assert all(r.cost == Decimal("0.0001") for r in results)


def test_ttl_urgency_and_topic_are_sent_as_the_settings_say(peer):
    settings = peer.gateway_settings(ttl=3600, urgency="high", topic="weekly-offers")

    _send(_gateway(settings), [_push(1, peer.subscription(1))])

    [pushed] = peer.received
    assert (pushed.ttl, pushed.urgency, pushed.topic) == (3600, "high", "weekly-offers")


def test_a_push_is_kept_a_day_at_normal_urgency_without_a_topic_by_default(peer):
    _send(_gateway(peer.gateway_settings()), [_push(1, peer.subscription(1))])

    [pushed] = peer.received
    assert (pushed.ttl, pushed.urgency, pushed.topic) == (86400, "normal", None)


def test_the_push_service_accepts_the_vapid_jwt_for_its_origin_and_the_subject(peer):
    [result] = _send(_gateway(peer.gateway_settings()), [_push(1, peer.subscription(1))])

    assert result.ok
    [pushed] = peer.received
    assert pushed.claims["aud"] == peer.url
    assert pushed.claims["sub"] == "mailto:push@engage.example.com"
    assert time.time() + 11 * 3600 < pushed.claims["exp"] <= time.time() + 24 * 3600


def test_one_vapid_jwt_is_signed_per_push_service_and_reused_by_the_next_batch(peer):
    settings = peer.gateway_settings(vapid_subject="mailto:reuse@engage.example.com")

    _send(_gateway(settings), [_push(n, peer.subscription(n)) for n in range(1, 6)])
    _send(_gateway(settings), [_push(n, peer.subscription(n)) for n in range(6, 9)])

    assert len(peer.received) == 8
    assert len(peer.jwts) == 1


def test_a_pem_vapid_key_signs_as_the_raw_one_does(peer):
    pem = peer.vapid_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()).decode()

    [result] = _send(_gateway(peer.gateway_settings(vapid_private_key=pem)),
                     [_push(1, peer.subscription(1))])

    assert result.ok and len(peer.received) == 1


# --- errors -------------------------------------------------------------------------------

def test_a_gone_subscription_fails_permanently_as_dead_and_its_siblings_are_sent(peer):
    peer.script.gone.add("2")

    results = _send(_gateway(peer.gateway_settings()),
                    [_push(n, peer.subscription(n)) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "subscription_gone" and error.code in DEAD_SUBSCRIPTION_CODES
    assert "410" in error.message and "expired subscription" in error.message


def test_a_subscription_the_push_service_does_not_know_is_dead(peer):
    peer.script.not_found.add("1")

    [result] = _send(_gateway(peer.gateway_settings()), [_push(1, peer.subscription(1))])

    assert result.error.permanent
    assert result.error.code == "subscription_not_found"
    assert result.error.code in WebPushGateway.dead_address_codes


def test_a_payload_over_the_push_services_limit_is_permanent_and_keeps_the_device(peer):
    huge = OutboundMessage(message_id=1, address=peer.subscription(1), subject="Offer",
                           body="x" * 5000)

    [result] = _send(_gateway(peer.gateway_settings()), [huge])

    assert result.error.permanent
    assert result.error.code == "payload_too_large"
    assert result.error.code not in DEAD_SUBSCRIPTION_CODES
    assert peer.requests == [("1", 413)]


def test_too_many_requests_is_transient_with_the_retry_after(peer):
    peer.script.throttled["1"] = 37

    [result] = _send(_gateway(peer.gateway_settings()), [_push(1, peer.subscription(1))])

    assert not result.error.permanent and not result.error.in_doubt
    assert (result.error.code, result.error.retry_after) == ("too_many_requests", 37)


def test_a_throttled_subscription_does_not_hold_back_the_others(peer):
    peer.script.throttled["1"] = 37

    results = _send(_gateway(peer.gateway_settings(concurrency=1)),
                    [_push(n, peer.subscription(n)) for n in (1, 2)])

    assert [r.ok for r in results] == [False, True]


def test_an_unavailable_push_service_is_transient(peer):
    peer.script.unavailable.add("1")

    [result] = _send(_gateway(peer.gateway_settings()), [_push(1, peer.subscription(1))])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "HTTP_503"
    assert peer.received == []


def test_a_push_left_unanswered_past_the_timeout_is_in_doubt(peer):
    peer.script.stalled.add("2")
    peer.script.stall_seconds = 4

    results = _send(_gateway(peer.gateway_settings(timeout=1)),
                    [_push(n, peer.subscription(n)) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    # The push service did take it: resending would push it twice.
    assert "2" in {p.subscription_id for p in peer.received}


def test_a_key_the_subscription_was_not_made_with_is_permanent_and_keeps_the_device(peer):
    other = WebPushPeer()  # another site's VAPID key, never started
    settings = peer.gateway_settings(vapid_private_key=other.vapid_private_key_raw())

    [result] = _send(_gateway(settings), [_push(1, peer.subscription(1))])

    assert result.error.permanent
    assert result.error.code == "vapid_forbidden"
    assert result.error.code not in DEAD_SUBSCRIPTION_CODES
    assert peer.requests == [("1", 403)]


def test_a_refused_jwt_stops_the_batch_to_that_push_service_only():
    refusing, taking = WebPushPeer().start(), WebPushPeer().start()
    try:
        refusing.script.refuse_jwts = True
        # The same site key on both push services, as in production.
        taking.vapid_key = refusing.vapid_key
        taking.application_server_key = refusing.application_server_key
        batch = [_push(1, refusing.subscription(1)), _push(2, taking.subscription(2)),
                 _push(3, refusing.subscription(3)), _push(4, taking.subscription(4))]

        results = _send(_gateway(refusing.gateway_settings(concurrency=1)), batch)
    finally:
        refusing.stop()
        taking.stop()

    assert [r.ok for r in results] == [False, True, False, True]
    first, third = results[0].error, results[2].error
    assert (first.code, first.permanent) == ("vapid_refused", False)
    assert (third.code, third.permanent) == ("vapid_refused", False)
    assert third.message.startswith("not attempted")
    assert refusing.requests == [("1", 401)]


def test_a_refused_jwt_is_signed_anew_for_the_next_batch(peer):
    peer.script.refuse_jwts = True
    settings = peer.gateway_settings(vapid_subject="mailto:anew@engage.example.com")

    _send(_gateway(settings), [_push(1, peer.subscription(1))])
    _send(_gateway(settings), [_push(2, peer.subscription(2))])

    assert len(peer.jwts) == 2


def test_an_unreachable_push_service_is_transient_and_its_other_pushes_get_no_result(peer):
    dead = f"http://127.0.0.1:{free_port()}"
    batch = [_push(1, _subscription(f"{dead}/push/1")), _push(2, peer.subscription(2)),
             _push(3, _subscription(f"{dead}/push/3"))]

    results = _send(_gateway(peer.gateway_settings(concurrency=1)), batch)

    # The third was never attempted: without a result it goes back to the queue unspent.
    assert [(r.message_id, r.ok) for r in results] == [(1, False), (2, True)]
    assert results[0].error.code == "connect_failed"
    assert not results[0].error.permanent and not results[0].error.in_doubt


def test_a_subscription_that_is_not_json_fails_permanently_as_dead_unsent(peer):
    results = _send(_gateway(peer.gateway_settings()),
                    [_push(1, "fcm-token-not-a-subscription"), _push(2, peer.subscription(2))])

    assert [r.ok for r in results] == [False, True]
    assert results[0].error.permanent
    assert results[0].error.code == "invalid_subscription"
    assert results[0].error.code in DEAD_SUBSCRIPTION_CODES
    assert [sub for sub, _ in peer.requests] == ["2"]


def test_the_push_service_takes_a_push_the_browser_then_cannot_decrypt(peer):
    # Encrypted for another browser's keys: a push service cannot tell, so it answers 201; the
    # browser that reads it later cannot, and the peer's reading fails the test.
    subscription = json.loads(peer.subscription(1))
    subscription["keys"] = Browser.new().keys

    [result] = _send(_gateway(peer.gateway_settings()), [_push(1, json.dumps(subscription))])

    assert result.ok
    assert peer.requests == [("1", 201)]
    with pytest.raises(AssertionError, match="could not decrypt: push to 1"):
        _ = peer.received


# --- the encryption ---------------------------------------------------------------------

def test_the_encryption_makes_rfc_8291s_example_body_from_its_key_and_salt():
    body = aes128gcm_encrypt(RFC8291_PLAINTEXT, p256dh=b64url_decode(RFC8291_P256DH),
                             auth=b64url_decode(RFC8291_AUTH),
                             sender_key=_p256_key(RFC8291_AS_PRIVATE),
                             salt=b64url_decode(RFC8291_SALT))

    assert body == b64url_decode(RFC8291_BODY)


@pytest.mark.parametrize("size", [0, 300, 4079, 4080, 9000])
def test_http_ece_decrypts_a_push_body_of_one_record_or_several(size):
    browser = Browser.new()
    plaintext = bytes(n % 251 for n in range(size))

    body = aes128gcm_encrypt(plaintext, p256dh=b64url_decode(browser.keys["p256dh"]),
                             auth=browser.auth)

    assert http_ece.decrypt(body, private_key=browser.private_key, auth_secret=browser.auth,
                            version="aes128gcm") == plaintext


def test_each_push_gets_its_own_key_pair_and_salt():
    browser = Browser.new()
    keys = {"p256dh": b64url_decode(browser.keys["p256dh"]), "auth": browser.auth}

    first, second = (aes128gcm_encrypt(b"the same offer", **keys) for _ in range(2))

    # header: salt (16), record size (4), key length (1), the sender's public key (65)
    assert first[:16] != second[:16]
    assert first[21:86] != second[21:86]


def test_the_peers_browser_reads_rfc_8291s_example_and_refuses_it_altered():
    browser = Browser(_p256_key(RFC8291_UA_PRIVATE), b64url_decode(RFC8291_AUTH))
    body = b64url_decode(RFC8291_BODY)

    assert browser.decrypt(body) == RFC8291_PLAINTEXT
    with pytest.raises(ValueError, match="does not decrypt"):
        browser.decrypt(body[:-1] + bytes([body[-1] ^ 1]))


# --- the subscription rule ----------------------------------------------------------------

def test_a_browsers_subscription_passes_the_subscription_rule():
    subscription = _subscription("https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bH")

    assert webpush_subscription_errors(subscription) == {}


def test_the_subscription_rule_names_an_http_endpoint_and_keys_that_do_not_decode():
    subscription = _subscription("http://push.example.com/push/1",
                                 p256dh="BAAAAAAAAAAAAAAAAAAA", auth="c2hvcnQ")

    assert sorted(webpush_subscription_errors(subscription)) == [
        "endpoint", "keys.auth", "keys.p256dh"]


def test_the_subscription_rule_refuses_65_bytes_that_are_no_point_on_p256():
    not_a_point = "BA" + "A" * 85  # 0x04 then zeros: (0, 0) is not on the curve

    errors = webpush_subscription_errors(_subscription("https://push.example.com/1",
                                                       p256dh=not_a_point))

    assert list(errors) == ["keys.p256dh"]


def test_the_subscription_rule_takes_http_only_from_this_machine_or_a_private_network():
    assert webpush_subscription_errors(_subscription("http://127.0.0.1:8089/push/1")) == {}
    assert webpush_subscription_errors(_subscription("http://localhost/push/1")) == {}
    assert webpush_subscription_errors(_subscription("http://10.0.0.5/push/1")) == {}
    assert list(webpush_subscription_errors(_subscription("http://push.example.com/1"))) == [
        "endpoint"]


@pytest.mark.parametrize("host", [
    "localhost", "push.localhost", "127.0.0.1", "2130706433", "0177.0.0.1", "127.1",
    "10.1.2.3", "192.168.1.1", "172.16.0.9", "169.254.169.254", "0.0.0.0",
])
def test_in_production_the_rule_refuses_this_machine_and_private_networks_in_any_form(
        settings, host):
    settings.ENGAGE_PUSH_ALLOW_LOOPBACK = False

    errors = webpush_subscription_errors(_subscription(f"https://{host}/push/1"))

    assert list(errors) == ["endpoint"] and "private network" in errors["endpoint"]


def test_in_production_a_public_push_service_passes_the_rule(settings):
    settings.ENGAGE_PUSH_ALLOW_LOOPBACK = False

    assert webpush_subscription_errors(
        _subscription("https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bH")) == {}


def test_the_public_address_resolver_refuses_a_name_of_this_machine():
    async def resolve() -> None:
        await PublicAddressResolver().resolve("localhost", 443)

    with pytest.raises(PrivateAddressRefused, match="127.0.0.1"):
        asyncio.run(resolve())


def test_in_production_a_name_resolving_inside_the_network_is_refused_for_good_unsent(
        settings, peer):
    settings.ENGAGE_PUSH_ALLOW_LOOPBACK = False
    name = socket.gethostname()  # resolves to this machine or its private address
    if address_is_public(socket.getaddrinfo(name, 443)[0][4][0]):
        pytest.skip(f"{name} resolves to a public address here")
    batch = [_push(1, _subscription(f"https://{name}:{peer.port}/push/1")),
             _push(2, _subscription(f"https://{name}:{peer.port}/push/2"))]

    results = _send(_gateway(peer.gateway_settings()), batch)

    assert [(r.ok, r.error.code, r.error.permanent) for r in results] == [
        (False, "private_address", True), (False, "private_address", True)]
    assert peer.requests == []


def test_the_subscription_rule_names_text_that_is_not_a_subscription():
    assert list(webpush_subscription_errors("not json")) == ["subscription"]
    assert list(webpush_subscription_errors('["endpoint"]')) == ["subscription"]


# --- settings and health ------------------------------------------------------------------

def test_the_peers_settings_pass_settings_errors(peer):
    assert WebPushGateway.settings_errors(peer.gateway_settings()) == {}


def test_settings_errors_name_each_bad_setting():
    errors = WebPushGateway.settings_errors({
        "vapid_private_key": "not a key", "vapid_subject": "push@engage.example.com",
        "ttl": -1, "urgency": "asap", "topic": "a topic with spaces", "concurrency": 0,
        "timeout": 0})

    assert sorted(errors) == ["concurrency", "timeout", "topic", "ttl", "urgency",
                              "vapid_private_key", "vapid_subject"]


def test_settings_errors_require_the_key_and_the_subject():
    assert sorted(WebPushGateway.settings_errors({})) == ["vapid_private_key", "vapid_subject"]


def test_an_rsa_key_is_refused_as_not_p256():
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()

    errors = WebPushGateway.settings_errors({"vapid_private_key": pem,
                                             "vapid_subject": "https://engage.example.com/"})

    assert list(errors) == ["vapid_private_key"]
    assert "P-256" in errors["vapid_private_key"]


def test_health_proves_the_key_signs_and_shows_the_application_server_key(peer):
    ok, text = _gateway(peer.gateway_settings()).health()

    assert ok
    assert peer.application_server_key in text


def test_health_names_a_key_that_does_not_parse(peer):
    ok, text = _gateway(peer.gateway_settings(vapid_private_key="bm90IGEga2V5")).health()

    assert not ok
    assert "vapid_private_key" in text
