from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    OutboundMessage,
    SendResult,
    gateway_config_validate,
    gateway_for,
)
from communications.gateways.http_sms import HttpSmsGateway
from communications.models import Gateway, Mailing, Message, ProviderReceipt, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.statuses import receipts_apply
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import consenting_member
from tests.peers.http_sms import HttpSmsPeer
from tests.peers.smtp import free_port

SENDER = "EngageClub"


@pytest.fixture
def sms_peer() -> Iterator[HttpSmsPeer]:
    peer = HttpSmsPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, gateway_id: int = 51, sender: str = SENDER) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel="sms", provider="http_sms", settings=settings,
        sender=sender, price_per_message=Decimal("0.012"),
    ))


def _sms(n: int, to: str | None = None) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=to or f"+4915100000{n:03d}", subject="",
                           body=f"Double points today, member {n}")


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending --------------------------------------------------------------------------------

def test_a_batch_reaches_the_provider_as_json_in_its_own_field_names(sms_peer):
    _send(_gateway(sms_peer.gateway_settings()), [_sms(n) for n in (1, 2)])

    received = sorted(sms_peer.received, key=lambda sms: sms.msisdn)
    assert [(s.method, s.content_type, s.fields) for s in received] == [
        ("POST", "application/json",
         {"msisdn": f"4915100000{n:03d}", "text": f"Double points today, member {n}",
          "from": SENDER, "ref": str(n), "route": "promo"})
        for n in (1, 2)]


def test_results_come_back_in_batch_order_with_the_providers_message_ids(sms_peer):
    results = _send(_gateway(sms_peer.gateway_settings(concurrency=8)),
                    [_sms(n) for n in range(1, 21)])

    id_by_ref = {sms.ref: sms.message_id for sms in sms_peer.received}
    assert [r.message_id for r in results] == list(range(1, 21))
    assert [r.provider_id for r in results] == [id_by_ref[str(n)] for n in range(1, 21)]
    assert {r.cost for r in results} == {Decimal("0.012")}


def test_a_batch_is_sent_concurrently_not_one_sms_after_another(sms_peer):
    sms_peer.script.stalled.update(f"4915100000{n:03d}" for n in range(8))
    sms_peer.script.stall_seconds = 0.5

    started = time.monotonic()
    results = _send(_gateway(sms_peer.gateway_settings(concurrency=8)),
                    [_sms(n) for n in range(8)])

    # One after another would take 8 x 0.5 s.
    assert all(r.ok for r in results)
    assert time.monotonic() - started < 2.5


def test_a_form_request_with_basic_auth_reaches_the_provider():
    peer = HttpSmsPeer(auth="basic").start()
    try:
        [result] = _send(_gateway(peer.gateway_settings(format="form")), [_sms(1)])
    finally:
        peer.stop()

    assert result.ok
    [sms] = peer.received
    assert (sms.content_type, sms.msisdn, sms.sender) == (
        "application/x-www-form-urlencoded", "4915100000001", SENDER)


def test_a_get_request_carries_the_fields_in_the_query_string():
    peer = HttpSmsPeer(auth="none").start()
    try:
        [result] = _send(_gateway(peer.gateway_settings(method="GET", format="form")),
                         [_sms(1)])
    finally:
        peer.stop()

    assert result.ok
    [sms] = peer.received
    assert (sms.method, sms.msisdn, sms.text) == ("GET", "4915100000001",
                                                  "Double points today, member 1")


def test_a_listed_permanent_code_in_a_200_answer_is_a_permanent_error(sms_peer):
    sms_peer.script.invalid.add("4915100000002")

    results = _send(_gateway(sms_peer.gateway_settings()), [_sms(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "INVALID_MSISDN"
    assert "Invalid destination number" in error.message


def test_an_error_code_not_listed_as_permanent_is_transient(sms_peer):
    sms_peer.script.refused["4915100000001"] = "ROUTE_BUSY"

    [result] = _send(_gateway(sms_peer.gateway_settings()), [_sms(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "ROUTE_BUSY"


def test_a_success_code_at_the_error_path_counts_as_sent(sms_peer):
    # This provider says "status": "ok" or "error"; only "ok" is a success.
    settings = sms_peer.gateway_settings(error_path="status", success_codes=["ok"],
                                         permanent_codes=["error"])
    sms_peer.script.invalid.add("4915100000002")

    results = _send(_gateway(settings), [_sms(1), _sms(2)])

    assert results[0].ok and results[0].provider_id.startswith("hs-")
    assert results[1].error.permanent and results[1].error.code == "error"


def test_too_many_requests_is_transient_with_the_retry_after(sms_peer):
    sms_peer.script.throttled["4915100000001"] = 23

    [result] = _send(_gateway(sms_peer.gateway_settings()), [_sms(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "THROTTLED"
    assert result.error.retry_after == 23


def test_a_plain_text_503_is_transient(sms_peer):
    sms_peer.script.unavailable.add("4915100000001")

    [result] = _send(_gateway(sms_peer.gateway_settings()), [_sms(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "HTTP_503"
    assert "Service Unavailable" in result.error.message


def test_an_sms_left_unanswered_past_the_timeout_is_in_doubt(sms_peer):
    sms_peer.script.stalled.add("4915100000002")
    sms_peer.script.stall_seconds = 4

    results = _send(_gateway(sms_peer.gateway_settings(timeout=1)),
                    [_sms(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent
    assert "4915100000002" in {sms.msisdn for sms in sms_peer.received}


def test_an_answer_without_a_message_id_is_in_doubt(sms_peer):
    [result] = _send(_gateway(sms_peer.gateway_settings(id_path="result.id")), [_sms(1)])

    assert result.error.in_doubt
    assert result.error.code == "no_provider_id"
    assert "'result.id'" in result.error.message


def test_an_unreachable_provider_is_transient_and_nothing_is_in_doubt(sms_peer):
    settings = sms_peer.gateway_settings(url=f"http://127.0.0.1:{free_port()}/api/send")

    results = _send(_gateway(settings), [_sms(n) for n in range(3)])

    assert all(not r.ok for r in results)
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


def test_the_rest_of_a_batch_after_a_refused_connection_gets_no_result(sms_peer):
    settings = sms_peer.gateway_settings(url=f"http://127.0.0.1:{free_port()}/api/send",
                                         concurrency=1)

    results = _send(_gateway(settings), [_sms(n) for n in range(3)])

    # Only the first was attempted; the others go back to the queue with their attempts.
    assert [(r.message_id, r.error.code) for r in results] == [(0, "connect_failed")]


def test_refused_credentials_fail_the_batch_after_one_request(sms_peer):
    settings = sms_peer.gateway_settings(token="not-the-token", concurrency=1)

    results = _send(_gateway(settings), [_sms(n) for n in range(4)])

    assert all(not r.ok and not r.error.permanent for r in results)
    assert results[0].error.code == "AUTH_FAILED"
    assert [r.status for r in sms_peer.requests] == [401]
    assert sms_peer.received == []


# --- health ---------------------------------------------------------------------------------

def test_the_health_probe_connects_to_the_provider_without_sending(sms_peer):
    ok, detail = _gateway(sms_peer.gateway_settings()).health()

    assert (ok, detail) == (True, f"127.0.0.1:{sms_peer.port} accepts connections")
    assert sms_peer.requests == []


def test_the_health_probe_reports_an_unreachable_provider(sms_peer):
    port = free_port()
    settings = sms_peer.gateway_settings(url=f"http://127.0.0.1:{port}/api/send")

    ok, detail = _gateway(settings).health()

    assert not ok
    assert detail.startswith(f"cannot connect to 127.0.0.1:{port}")


# --- settings -------------------------------------------------------------------------------

def test_the_peers_settings_pass_settings_errors(sms_peer):
    assert HttpSmsGateway.settings_errors(sms_peer.gateway_settings()) == {}


def test_settings_errors_name_each_wrong_setting():
    errors = HttpSmsGateway.settings_errors({
        "url": "sms.example.net/send", "method": "PATCH", "auth": "basic", "username": "engage",
        "fields": {"text": "message", "number": "to"}, "phone_format": "national",
        "permanent_codes": "INVALID", "receipt_statuses": {"DELIVRD": "read"}})

    assert sorted(errors) == ["error_path", "fields", "fields.phone", "id_path", "method",
                              "password", "permanent_codes", "phone_format",
                              "receipt_statuses", "url"]
    assert "unknown key(s) number" in errors["fields"]
    assert "DELIVRD: must map to one of delivered" in errors["receipt_statuses"]


def test_a_get_with_a_json_body_is_refused_by_settings_errors(sms_peer):
    errors = HttpSmsGateway.settings_errors(sms_peer.gateway_settings(method="GET"))

    assert errors == {"format": "a GET sends its fields in the query string: set format to form"}


def test_a_gateway_with_wrong_settings_cannot_be_saved(sms_peer):
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="sms", provider="http_sms",
                                settings=sms_peer.gateway_settings(auth="bearer", token=""))

    assert error.value.message_dict == {"settings": ["token: required with bearer auth"]}


# --- delivery reports -----------------------------------------------------------------------

@pytest.fixture
def sms_gateway(db, sms_peer) -> Gateway:
    return GatewayFactory(name="Aggregator", channel="sms", provider="http_sms", sender=SENDER,
                          settings=sms_peer.gateway_settings())


def _sent_message(peer: HttpSmsPeer, gateway: Gateway) -> Message:
    [result] = _send(_gateway(gateway.adapter_settings(), gateway_id=gateway.pk), [_sms(1)])
    return MessageFactory(gateway=gateway, channel="sms", provider_id=result.provider_id,
                          status=Message.Status.SENT)


def _post_report(client, peer: HttpSmsPeer, gateway_id: int, body: bytes, *,
                 signature: str | None = None, content_type: str = "application/json"):
    return client.post(reverse("http-sms-receipts", args=[gateway_id]), body,
                       content_type=content_type,
                       headers={"X-Signature": signature or peer.signature(body)})


def test_a_signed_delivery_report_moves_the_message_to_delivered(client, sms_peer, sms_gateway):
    message = _sent_message(sms_peer, sms_gateway)

    response = _post_report(client, sms_peer, sms_gateway.pk,
                            sms_peer.receipt_body(message.provider_id, "DELIVRD"))
    receipts_apply()

    assert (response.status_code, response.json()) == (200, {"accepted": 1, "ignored": 0})
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_an_undelivered_report_keeps_the_providers_code_and_time(client, sms_peer, sms_gateway):
    message = _sent_message(sms_peer, sms_gateway)

    _post_report(client, sms_peer, sms_gateway.pk, sms_peer.receipt_body(
        message.provider_id, "UNDELIV", err="034", done_at="2026-12-06T09:30:00+01:00"))
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED
    receipt = ProviderReceipt.objects.get(provider_id=message.provider_id)
    assert (receipt.code, receipt.occurred_at.isoformat()) == ("034",
                                                                "2026-12-06T08:30:00+00:00")


def test_a_report_of_a_state_that_is_not_final_is_acknowledged_and_ignored(client, sms_peer,
                                                                           sms_gateway):
    message = _sent_message(sms_peer, sms_gateway)

    response = _post_report(client, sms_peer, sms_gateway.pk,
                            sms_peer.receipt_body(message.provider_id, "ENROUTE"))

    assert response.json() == {"accepted": 0, "ignored": 1}
    assert not ProviderReceipt.objects.exists()


def test_a_report_signed_with_another_secret_is_refused_with_403(client, sms_peer, sms_gateway):
    body = sms_peer.receipt_body("hs-000001", "DELIVRD")

    response = _post_report(client, sms_peer, sms_gateway.pk, body, signature="0" * 64)

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert not ProviderReceipt.objects.exists()


def test_a_list_of_reports_with_one_without_an_id_is_refused_whole(client, sms_peer,
                                                                   sms_gateway):
    body = json.dumps([{"message_id": "hs-000001", "state": "DELIVRD"},
                       {"state": "DELIVRD"}]).encode()

    response = _post_report(client, sms_peer, sms_gateway.pk, body)

    assert response.status_code == 400
    assert response.json() == {"receipts": {"1": {
        "message_id": "the provider's message id (1 to 200 characters) is required"}}}
    assert not ProviderReceipt.objects.exists()


def test_a_form_encoded_report_is_read_with_the_same_field_names(client, sms_peer, sms_gateway):
    body = urlencode({"message_id": "hs-000007", "state": "EXPIRED", "err": "000"}).encode()

    response = _post_report(client, sms_peer, sms_gateway.pk, body,
                            content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert list(ProviderReceipt.objects.values_list("provider_id", "status")) == [
        ("hs-000007", "expired")]


@pytest.mark.django_db(transaction=True)
def test_the_peer_posts_a_signed_report_over_http_that_is_stored(live_server, sms_peer):
    gateway = GatewayFactory(channel="sms", provider="http_sms", sender=SENDER,
                             settings=sms_peer.gateway_settings())
    message = _sent_message(sms_peer, gateway)

    status, body = sms_peer.post_receipt(
        f"{live_server.url}{reverse('http-sms-receipts', args=[gateway.pk])}",
        sms_peer.receipt_body(message.provider_id, "DELIVRD"))

    assert (status, json.loads(body)) == (200, {"accepted": 1, "ignored": 0})
    assert list(ProviderReceipt.objects.values_list("provider_id", "status")) == [
        (message.provider_id, "delivered")]


# --- a mailing ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_sms_mailing_goes_out_through_the_http_provider_and_its_reports_apply(client,
                                                                                sms_peer):
    # given: any hour will do (quiet hours are tests/communications/test_compliance.py's)
    QuietHours.objects.filter(channel="sms").update(is_active=False)
    ann = consenting_member(channel="sms", first_name="Ann", phone="+4915111111111")
    bob = consenting_member(channel="sms", first_name="Bob", phone="+4915122222222")
    gateway = GatewayFactory(name="Aggregator", channel="sms", provider="http_sms",
                             sender=SENDER, settings=sms_peer.gateway_settings())
    mailing = MailingFactory(gateway=gateway, template=TemplateFactory(
        channel="sms", subject="", body="Hi {{ member.first_name }}, double points today"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    # when
    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=1)["claimed"]:
        pass

    # then: one SMS per member, carrying our message id as the provider's reference
    messages = {m.member_id: m for m in Message.objects.filter(mailing=mailing)}
    assert sorted((s.msisdn, s.sender, s.text, s.ref) for s in sms_peer.received) == [
        ("4915111111111", SENDER, "Hi Ann, double points today", str(messages[ann.pk].pk)),
        ("4915122222222", SENDER, "Hi Bob, double points today", str(messages[bob.pk].pk)),
    ]
    ids = {s.msisdn: s.message_id for s in sms_peer.received}
    assert {pk: (m.status, m.provider_id) for pk, m in messages.items()} == {
        ann.pk: ("sent", ids["4915111111111"]), bob.pk: ("sent", ids["4915122222222"])}

    # and when the provider reports back
    body = json.dumps([{"message_id": ids["4915111111111"], "state": "DELIVRD"},
                       {"message_id": ids["4915122222222"], "state": "REJECTD",
                        "err": "088"}]).encode()
    _post_report(client, sms_peer, gateway.pk, body)
    receipts_apply()

    assert dict(Message.objects.filter(mailing=mailing).values_list("member_id", "status")) == {
        ann.pk: "delivered", bob.pk: "rejected"}
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED
