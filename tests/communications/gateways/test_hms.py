"""The Huawei Push Kit adapter against a Push Kit peer on loopback, and its receipt parser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.base import dead_address_codes
from communications.gateways.hms import (
    TOKEN_INVALID_CODES,
    HmsGateway,
    callback_authentic,
    receipts_read,
)
from tests.peers.hms import HmsPeer
from tests.peers.smtp import free_port

IMAGE = "https://cdn.engage.example.com/offers/autumn.jpg"
RECEIVED_AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def hms_peer() -> Iterator[HmsPeer]:
    peer = HmsPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 61) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="push", provider="hms", settings=settings, sender="",
        price_per_message=Decimal("0.0001"),
    ))


def _push(n: int, token: str | None = None, **rich) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=token or f"hms-token-{n}",
                           subject=f"Offer {n}", body=f"Your points, member {n}", **rich)


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending ------------------------------------------------------------------------------

def test_a_push_reaches_push_kit_with_title_body_image_link_and_data(hms_peer):
    push = _push(7, image_url=IMAGE, link_url="https://club.engage.example.com/offers/7",
                 data={"offer_id": "7"})

    _send(_gateway(hms_peer.gateway_settings()), [push])

    [pushed] = hms_peer.received
    assert (pushed.token, pushed.title, pushed.body, pushed.image) == (
        "hms-token-7", "Offer 7", "Your points, member 7", IMAGE)
    assert pushed.click_action == {"type": 2, "url": "https://club.engage.example.com/offers/7"}
    assert pushed.data == {"offer_id": "7", "link": "https://club.engage.example.com/offers/7",
                           "image": IMAGE, "engage_message_id": "7"}


def test_each_push_carries_its_message_id_as_its_bi_tag(hms_peer):
    _send(_gateway(hms_peer.gateway_settings()), [_push(n) for n in (3, 4)])

    assert sorted(p.bi_tag for p in hms_peer.received) == ["3", "4"]


def test_an_app_deep_link_is_the_intent_a_tap_opens(hms_peer):
    _send(_gateway(hms_peer.gateway_settings()), [_push(1, link_url="myapp://offers/1")])

    assert hms_peer.received[0].click_action == {"type": 1, "intent": "myapp://offers/1"}


def test_a_push_without_a_link_opens_the_app(hms_peer):
    _send(_gateway(hms_peer.gateway_settings()), [_push(1)])

    assert hms_peer.received[0].click_action == {"type": 3}


def test_each_push_is_one_request_and_results_carry_its_request_id_in_batch_order(hms_peer):
    results = _send(_gateway(hms_peer.gateway_settings(concurrency=8)),
                    [_push(n) for n in range(1, 31)])

    request_by_token = {p.token: p.request_id for p in hms_peer.received}
    assert hms_peer.requests == 30
    assert [r.message_id for r in results] == list(range(1, 31))
    assert [r.provider_id for r in results] == [request_by_token[f"hms-token-{n}"]
                                                for n in range(1, 31)]
    assert len(set(request_by_token.values())) == 30


def test_sent_pushes_cost_the_gateway_price(hms_peer):
    [result] = _send(_gateway(hms_peer.gateway_settings()), [_push(1)])

    assert result.cost == Decimal("0.0001")


# --- the access token ---------------------------------------------------------------------

def test_the_access_token_is_fetched_once_for_two_batches(hms_peer):
    settings = hms_peer.gateway_settings()

    # Each batch gets its own adapter instance, as a worker builds one per batch.
    first = _send(_gateway(settings, gateway_id=62), [_push(1)])
    second = _send(_gateway(settings, gateway_id=62), [_push(2)])

    assert first[0].ok and second[0].ok
    assert hms_peer.token_grants == 1


def test_the_access_token_is_fetched_again_before_it_expires():
    peer = HmsPeer(access_token_lifetime=1).start()
    try:
        settings = peer.gateway_settings()
        _send(_gateway(settings, gateway_id=63), [_push(1)])
        time.sleep(0.6)  # past half the token's life: too close to its end to use it

        [result] = _send(_gateway(settings, gateway_id=63), [_push(2)])
    finally:
        peer.stop()

    assert result.ok
    assert peer.token_grants == 2


def test_an_expired_access_token_is_refreshed_once_and_the_pushes_sent(hms_peer):
    gateway = _gateway(hms_peer.gateway_settings(concurrency=5), gateway_id=64)
    gateway.open()
    try:
        gateway.send([_push(0)])
        hms_peer.expire_access_tokens()

        results = gateway.send([_push(n) for n in range(1, 11)])
    finally:
        gateway.close()

    assert all(r.ok for r in results)
    assert hms_peer.token_grants == 2
    assert len(hms_peer.received) == 11


def test_a_refresh_the_token_endpoint_refuses_stops_the_batch_after_one_try(hms_peer):
    gateway = _gateway(hms_peer.gateway_settings(concurrency=2), gateway_id=65)
    gateway.open()
    try:
        hms_peer.expire_access_tokens()
        hms_peer.script.refuse_grants = True

        results = gateway.send([_push(n) for n in range(6)])
    finally:
        gateway.close()

    assert all(not r.ok and not r.error.permanent for r in results)
    assert results[0].error.code == "oauth_refused"
    assert hms_peer.token_refusals == 1
    assert hms_peer.received == []


def test_an_app_secret_the_token_endpoint_refuses_is_a_transient_error_at_open(hms_peer):
    gateway = _gateway(hms_peer.gateway_settings(client_secret="not-the-secret"),
                       gateway_id=66)

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert not error.value.permanent
    assert error.value.code == "oauth_refused"
    assert "invalid client_secret" in error.value.message


# --- errors -------------------------------------------------------------------------------

def test_an_invalid_token_fails_permanently_as_dead_and_its_siblings_are_sent(hms_peer):
    hms_peer.script.invalid.add("hms-token-2")

    results = _send(_gateway(hms_peer.gateway_settings()), [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "80300007"
    assert error.code in TOKEN_INVALID_CODES
    assert sorted(p.token for p in hms_peer.received) == ["hms-token-1", "hms-token-3"]


def test_push_kits_dead_token_code_is_in_the_registry_for_the_push_channel():
    assert HmsGateway.dead_address_codes <= dead_address_codes(frozenset({"push"}))


def test_a_push_over_4096_bytes_is_permanent_and_keeps_the_device(hms_peer):
    [result] = _send(_gateway(hms_peer.gateway_settings()),
                     [_push(1, data={"story": "x" * 4100})])

    assert result.error.permanent
    assert result.error.code == "80300008"
    assert result.error.code not in TOKEN_INVALID_CODES


def test_http_429_is_transient_with_its_retry_after_and_the_rest_of_the_batch_waits(hms_peer):
    hms_peer.script.throttled["hms-token-1"] = 37

    results = _send(_gateway(hms_peer.gateway_settings(concurrency=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert all(not r.ok and not r.error.permanent for r in results)
    assert [r.error.retry_after for r in results] == [37, 37, 37]
    assert hms_peer.requests == 1


def test_http_503_flow_control_is_transient_with_the_throttle_wait(hms_peer):
    hms_peer.script.unavailable.add("hms-token-1")

    [result] = _send(_gateway(hms_peer.gateway_settings(throttle_retry_after=4)), [_push(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert (result.error.code, result.error.retry_after) == ("HTTP_503", 4)
    assert hms_peer.received == []


def test_an_internal_error_is_transient_and_its_siblings_are_sent(hms_peer):
    hms_peer.script.internal_error.add("hms-token-2")

    results = _send(_gateway(hms_peer.gateway_settings(concurrency=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert not results[1].error.permanent
    assert results[1].error.code == "81000001"


def test_an_app_push_kit_forbids_is_transient_and_stops_the_batch(hms_peer):
    hms_peer.script.forbidden = True

    results = _send(_gateway(hms_peer.gateway_settings(concurrency=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert all(not r.ok and not r.error.permanent for r in results)
    assert {r.error.code for r in results} == {"80300002"}
    assert hms_peer.requests == 1


def test_a_push_left_unanswered_past_the_timeout_is_in_doubt(hms_peer):
    hms_peer.script.stalled.add("hms-token-2")
    hms_peer.script.stall_seconds = 4

    results = _send(_gateway(hms_peer.gateway_settings(timeout=1)),
                    [_push(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    # Push Kit did take it: resending would push it twice.
    assert "hms-token-2" in {p.token for p in hms_peer.received}


def test_an_unreachable_endpoint_is_transient_and_nothing_is_in_doubt(hms_peer):
    settings = hms_peer.gateway_settings(endpoint=f"http://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_push(n) for n in range(3)])

    assert all(not r.ok for r in results)
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


# --- health and settings ------------------------------------------------------------------

def test_the_health_probe_gets_a_fresh_access_token(hms_peer):
    settings = hms_peer.gateway_settings()
    _send(_gateway(settings, gateway_id=67), [_push(1)])

    ok, detail = _gateway(settings, gateway_id=67).health()

    assert ok, detail
    assert hms_peer.token_grants == 2
    assert hms_peer.app_id in detail


def test_the_health_probe_reports_a_refused_app_secret(hms_peer):
    ok, detail = _gateway(hms_peer.gateway_settings(client_secret="guess"),
                          gateway_id=68).health()

    assert not ok
    assert "oauth_refused" in detail


def test_the_peers_settings_pass_settings_errors(hms_peer):
    assert HmsGateway.settings_errors(hms_peer.gateway_settings()) == {}


def test_settings_errors_name_a_missing_app_id_and_secret_and_each_bad_url():
    errors = HmsGateway.settings_errors({"endpoint": "push-api.cloud.huawei.com",
                                         "token_url": "ftp://oauth", "concurrency": 0})

    assert sorted(errors) == ["app_id", "client_secret", "concurrency", "endpoint",
                              "token_url"]


def test_settings_errors_want_the_callback_key_with_the_callback_user(hms_peer):
    settings = hms_peer.gateway_settings()
    del settings["inbound_secret"]

    assert list(HmsGateway.settings_errors(settings)) == ["inbound_secret"]


# --- receipts -----------------------------------------------------------------------------

def _receipt_body(*statuses: dict) -> bytes:
    return json.dumps({"statuses": list(statuses)}).encode()


def _status(status: int, request_id: str = "1700000000000000001", **fields) -> dict:
    return {"biTag": "42", "appid": "104000001", "token": "hms-token-42", "status": status,
            "timestamp": 1764583200000, "requestId": request_id, **fields}


def test_receipt_status_0_is_delivered_under_the_request_id_at_its_time():
    [receipt], ignored = receipts_read(_receipt_body(_status(0)), app_id="104000001",
                                       received_at=RECEIVED_AT)

    assert (receipt.provider_id, receipt.status, receipt.code) == (
        "1700000000000000001", "delivered", "0")
    assert receipt.occurred_at == datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    assert ignored == 0


def test_a_receipt_status_other_than_0_is_undelivered_with_push_kits_reason():
    [receipt], _ = receipts_read(_receipt_body(_status(2)), app_id="104000001",
                                 received_at=RECEIVED_AT)

    assert (receipt.status, receipt.code) == ("undelivered", "2")
    assert receipt.detail == "the app is not installed (biTag 42)"


def test_held_statuses_and_another_apps_statuses_are_ignored():
    receipts, ignored = receipts_read(
        _receipt_body(_status(27), _status(201), _status(0, appid="109999999")),
        app_id="104000001", received_at=RECEIVED_AT)

    assert (receipts, ignored) == ([], 3)


def test_a_receipt_status_without_its_request_id_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"statuses\[1\]: the requestId"):
        receipts_read(_receipt_body(_status(0), _status(0, request_id="")),
                      app_id="104000001", received_at=RECEIVED_AT)


def test_the_peers_callback_id_header_is_authentic(hms_peer):
    _, headers = hms_peer.receipt([])

    assert callback_authentic(settings=hms_peer.gateway_settings(),
                              header=headers["X-HUAWEI-CALLBACK-ID"])


def test_a_callback_id_made_with_another_key_is_not_authentic(hms_peer):
    _, headers = hms_peer.receipt([], callback_key="a-guess")

    assert not callback_authentic(settings=hms_peer.gateway_settings(),
                                  header=headers["X-HUAWEI-CALLBACK-ID"])


def test_a_callback_id_older_than_five_minutes_is_not_authentic(hms_peer):
    _, headers = hms_peer.receipt([], timestamp=int((time.time() - 301) * 1000))

    assert not callback_authentic(settings=hms_peer.gateway_settings(),
                                  header=headers["X-HUAWEI-CALLBACK-ID"])


def test_a_callback_id_timestamp_in_seconds_is_read_as_seconds(hms_peer):
    _, headers = hms_peer.receipt([], timestamp=int(time.time()))

    assert callback_authentic(settings=hms_peer.gateway_settings(),
                              header=headers["X-HUAWEI-CALLBACK-ID"])
