"""The anymail email gateway against a Postmark peer on loopback, and the tracking webhooks
that peer posts back to Engage through anymail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from communications.gateways import (
    GatewayConfig,
    OutboundMessage,
    gateway_config_validate,
    gateway_for,
)
from communications.models import Message, ProviderReceipt
from communications.services import (
    gateway_send,
    mailing_prepare,
    mailing_schedule,
    message_batch_dispatch,
    messages_record_results,
)
from communications.services.statuses import receipts_apply
from members.models import Consent, ConsentSource, Suppression
from tests.communications.factories import GatewayFactory, MailingFactory, MessageFactory
from tests.members.factories import consenting_member
from tests.peers.postmark import PostmarkPeer, Sent
from tests.peers.smtp import free_port

WEBHOOK_AUTH = ("postmark", "hook-secret-of-the-esp")


@pytest.fixture
def postmark_peer() -> Iterator[PostmarkPeer]:
    peer = PostmarkPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def webhook_secret(settings) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": ":".join(WEBHOOK_AUTH)}


def _gateway(settings: dict):
    return gateway_for(GatewayConfig(
        gateway_id=7, channel="email", provider="anymail", settings=settings,
        sender="Club <club@engage.example.com>", price_per_message=Decimal("0.0008"),
    ))


def _outbound(n: int, **fields) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=f"m{n}@members.example.com",
                           subject=f"Subject {n}", body=f"Body {n}", **fields)


def _send(settings: dict, batch: list[OutboundMessage]):
    gateway = _gateway(settings)
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending ------------------------------------------------------------------------------

def _esp_ids(peer: PostmarkPeer) -> dict[str, str]:
    return {s.to: s.message_id for s in peer.sent}


def test_a_batch_is_sent_with_the_esps_message_ids(postmark_peer):
    results = _send(postmark_peer.gateway_settings(), [_outbound(n) for n in (1, 2, 3)])

    assert all(r.ok for r in results)
    ids = _esp_ids(postmark_peer)
    assert [r.provider_id for r in results] == [ids[f"m{n}@members.example.com"]
                                                for n in (1, 2, 3)]
    assert all(r.cost == Decimal("0.0008") for r in results)


def test_a_postmark_batch_goes_out_in_one_batch_call_per_batch_size_messages(postmark_peer):
    results = _send(postmark_peer.gateway_settings(batch_size=2),
                    [_outbound(n) for n in range(1, 6)])

    assert all(r.ok for r in results)
    assert sorted(postmark_peer.batch_sizes) == [1, 2, 2]  # calls side by side: any order
    assert {s.endpoint for s in postmark_peer.sent} == {"/email/batch"}
    assert postmark_peer.requests == 3


def test_a_concurrency_of_one_sends_the_calls_over_one_connection_one_at_a_time(
        postmark_peer):
    results = _send(postmark_peer.gateway_settings(concurrency=1, batch_size=2),
                    [_outbound(n) for n in range(1, 6)])

    assert all(r.ok for r in results)
    assert postmark_peer.connections == 1
    assert postmark_peer.max_in_flight == 1


def test_batch_calls_go_over_as_many_connections_at_once_as_the_concurrency(postmark_peer):
    batch = [_outbound(n) for n in range(1, 9)]
    postmark_peer.script.slow.update(m.address for m in batch)

    results = _send(postmark_peer.gateway_settings(concurrency=4, batch_size=2), batch)

    assert all(r.ok for r in results)
    assert postmark_peer.max_in_flight == 4
    assert postmark_peer.connections == 4


def test_a_per_message_esp_sends_as_many_messages_at_once_as_the_concurrency(postmark_peer):
    batch = [_outbound(n) for n in range(1, 9)]
    postmark_peer.script.slow.update(m.address for m in batch)

    results = _send(postmark_peer.mailgun_settings(concurrency=4), batch)

    assert all(r.ok for r in results)
    assert postmark_peer.max_in_flight == 4
    assert postmark_peer.connections == 4
    assert postmark_peer.requests == 8


def test_results_keep_the_batch_order_when_later_calls_are_answered_first(postmark_peer):
    batch = [_outbound(n) for n in range(1, 7)]
    postmark_peer.script.slow.update({batch[0].address, batch[1].address})

    results = _send(postmark_peer.gateway_settings(concurrency=3, batch_size=2), batch)

    ids = _esp_ids(postmark_peer)
    assert [r.message_id for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r.provider_id for r in results] == [ids[m.address] for m in batch]


def test_connections_opened_for_one_send_serve_the_next_until_close(postmark_peer):
    gateway = _gateway(postmark_peer.gateway_settings(concurrency=2, batch_size=1))
    gateway.open()
    try:
        for first in (1, 3):
            postmark_peer.script.slow.update({f"m{first}@members.example.com",
                                              f"m{first + 1}@members.example.com"})
            gateway.send([_outbound(first), _outbound(first + 1)])
    finally:
        gateway.close()

    assert len(postmark_peer.sent) == 4
    assert postmark_peer.connections == 2


def test_each_email_carries_metadata_and_a_message_id_that_map_back_to_the_message(
        postmark_peer):
    _send(postmark_peer.gateway_settings(tag="november"), [_outbound(42)])

    [sent] = postmark_peer.sent
    assert sent.metadata == {"engage_message_id": "42"}
    assert sent.headers["Message-ID"].startswith("<engage.42.7@")
    assert sent.tag == "november"
    assert (sent.sender, sent.to, sent.subject, sent.text_body) == (
        "Club <club@engage.example.com>", "m42@members.example.com", "Subject 42", "Body 42")


def test_each_message_of_a_batch_call_keeps_its_own_fields(postmark_peer):
    _send(postmark_peer.gateway_settings(), [
        _outbound(1, html_body="<p>One</p>"),
        _outbound(2, headers={"List-Unsubscribe": "<https://club.example.com/u/two>"})])

    one, two = sorted(postmark_peer.sent, key=lambda s: s.to)
    assert postmark_peer.batch_sizes == [2]
    assert (one.subject, one.html_body, one.metadata) == (
        "Subject 1", "<p>One</p>", {"engage_message_id": "1"})
    assert "List-Unsubscribe" not in one.headers
    assert (two.subject, two.html_body, two.metadata) == (
        "Subject 2", "", {"engage_message_id": "2"})
    assert two.headers["List-Unsubscribe"] == "<https://club.example.com/u/two>"
    assert one.headers["Message-ID"] != two.headers["Message-ID"]


def test_list_unsubscribe_headers_and_the_html_part_reach_the_esp(postmark_peer):
    headers = {"List-Unsubscribe": "<https://club.example.com/u/abc>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    _send(postmark_peer.gateway_settings(),
          [_outbound(1, html_body="<p>Hi</p>", headers=headers)])

    [sent] = postmark_peer.sent
    assert sent.headers["List-Unsubscribe"] == "<https://club.example.com/u/abc>"
    assert sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.html_body == "<p>Hi</p>"


def test_an_invalid_recipient_fails_only_its_message_for_good(postmark_peer):
    postmark_peer.script.invalid.add("m2@members.example.com")

    results = _send(postmark_peer.gateway_settings(), [_outbound(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and not error.in_doubt
    assert error.code == "300"
    assert "Invalid 'To' address" in error.message
    assert sorted(s.to for s in postmark_peer.sent) == ["m1@members.example.com",
                                                        "m3@members.example.com"]


def test_an_inactive_recipient_is_rejected_for_good_with_postmarks_code(postmark_peer):
    postmark_peer.script.inactive.add("m1@members.example.com")

    [result] = _send(postmark_peer.gateway_settings(), [_outbound(1)])

    assert result.error.permanent
    assert result.error.code == "406"
    assert "inactive" in result.error.message


def test_an_address_anymail_cannot_parse_fails_for_good_and_the_rest_is_sent(postmark_peer):
    batch = [_outbound(1), _outbound(2)]
    batch[0] = OutboundMessage(message_id=1, address="nobody", subject="S", body="B")

    results = _send(postmark_peer.gateway_settings(), batch)

    assert results[0].error.permanent and results[0].error.code == "invalid_address"
    assert results[1].ok
    assert [s.to for s in postmark_peer.sent] == ["m2@members.example.com"]
    assert postmark_peer.batch_sizes == [1]


def test_a_sender_anymail_cannot_parse_fails_every_message_for_good(postmark_peer):
    gateway = gateway_for(GatewayConfig(
        gateway_id=7, channel="email", provider="anymail",
        settings=postmark_peer.gateway_settings(), sender="Club <club@@engage>",
        price_per_message=Decimal("0.0008")))
    gateway.open()
    try:
        results = gateway.send([_outbound(1), _outbound(2)])
    finally:
        gateway.close()

    assert all(r.error.permanent and r.error.code == "invalid_address" for r in results)
    assert "from_email" in results[0].error.message
    assert postmark_peer.requests == 0


def test_a_429_is_transient_with_retry_after_and_the_rest_is_not_attempted(postmark_peer):
    postmark_peer.script.throttled.add("m2@members.example.com")
    postmark_peer.script.throttle_retry_after = 7

    results = _send(postmark_peer.gateway_settings(concurrency=1, batch_size=1),
                    [_outbound(n) for n in (1, 2, 3)])

    assert results[0].ok
    for result in results[1:]:
        assert not result.error.permanent and not result.error.in_doubt
        assert result.error.retry_after == 7
    assert results[1].error.code == "429"
    assert [s.to for s in postmark_peer.sent] == ["m1@members.example.com"]
    assert postmark_peer.requests == 2


def test_a_429_on_a_batch_call_holds_all_its_messages_and_the_later_calls(postmark_peer):
    postmark_peer.script.throttled.add("m3@members.example.com")
    postmark_peer.script.throttle_retry_after = 7

    results = _send(postmark_peer.gateway_settings(concurrency=1, batch_size=2),
                    [_outbound(n) for n in range(1, 6)])

    assert [r.ok for r in results] == [True, True, False, False, False]
    assert [r.error.code for r in results[2:]] == ["429", "429", "429"]
    assert all(r.error.retry_after == 7 and not r.error.permanent and not r.error.in_doubt
               for r in results[2:])
    assert results[4].error.message.startswith("not attempted")
    assert sorted(s.to for s in postmark_peer.sent) == ["m1@members.example.com",
                                                        "m2@members.example.com"]
    assert postmark_peer.requests == 2


def test_a_429_without_retry_after_waits_the_throttle_setting(postmark_peer):
    postmark_peer.script.throttled.add("m1@members.example.com")

    [result] = _send(postmark_peer.gateway_settings(throttle_retry_after=3), [_outbound(1)])

    assert result.error.retry_after == 3


def test_a_429_on_one_connection_stops_the_messages_not_yet_taken(postmark_peer):
    # m1 is still on its way on one connection while the other is refused m2.
    postmark_peer.script.slow.add("m1@members.example.com")
    postmark_peer.script.slow_seconds = 1.0
    postmark_peer.script.throttled.add("m2@members.example.com")
    postmark_peer.script.throttle_retry_after = 7

    results = _send(postmark_peer.gateway_settings(concurrency=2, batch_size=1),
                    [_outbound(n) for n in (1, 2, 3, 4)])

    assert results[0].ok
    assert results[1].error.code == "429" and results[1].error.retry_after == 7
    for result in results[2:]:
        assert result.error.message.startswith("not attempted")
        assert not result.error.permanent and not result.error.in_doubt
        assert result.error.retry_after == 7
    assert [s.to for s in postmark_peer.sent] == ["m1@members.example.com"]
    assert postmark_peer.requests == 2


def test_no_answer_on_one_connection_is_in_doubt_and_the_others_keep_their_answers(
        postmark_peer):
    postmark_peer.script.stalled.add("m1@members.example.com")

    results = _send(postmark_peer.gateway_settings(timeout=1, concurrency=2, batch_size=1),
                    [_outbound(n) for n in (1, 2, 3)])

    assert results[0].error.in_doubt and results[0].error.code == "no_answer"
    assert results[1].ok and results[2].ok


def test_a_500_is_transient_and_the_later_calls_are_sent(postmark_peer):
    postmark_peer.script.failing.add("m1@members.example.com")

    results = _send(postmark_peer.gateway_settings(batch_size=2),
                    [_outbound(n) for n in (1, 2, 3)])

    for result in results[:2]:
        assert not result.error.permanent and not result.error.in_doubt
        assert result.error.code == "500"
    assert results[2].ok
    assert [s.to for s in postmark_peer.sent] == ["m3@members.example.com"]


def test_no_answer_to_a_batch_call_leaves_all_its_messages_in_doubt(postmark_peer):
    postmark_peer.script.stalled.add("m1@members.example.com")

    results = _send(postmark_peer.gateway_settings(timeout=0.5, concurrency=1, batch_size=2),
                    [_outbound(n) for n in (1, 2, 3)])

    assert all(r.error.in_doubt and r.error.code == "no_answer" for r in results)
    assert sorted(s.to for s in postmark_peer.sent) == ["m1@members.example.com",
                                                        "m2@members.example.com"]
    # The rest is not attempted and gets no result: back to the queue, its attempt unspent.
    assert [r.message_id for r in results] == [1, 2]
    assert postmark_peer.requests == 1


def test_a_batch_reply_that_cannot_be_read_leaves_its_messages_in_doubt(postmark_peer):
    postmark_peer.script.garbled.add("m1@members.example.com")

    results = _send(postmark_peer.gateway_settings(), [_outbound(n) for n in (1, 2)])

    assert all(r.error.in_doubt and r.error.code == "bad_reply" for r in results)
    assert len(postmark_peer.sent) == 2


def test_a_wrong_server_token_is_transient_so_messages_wait_for_the_fix(postmark_peer):
    results = _send(postmark_peer.gateway_settings(server_token="revoked", concurrency=1,
                                                   batch_size=1),
                    [_outbound(n) for n in (1, 2)])

    assert all(not r.ok and not r.error.permanent for r in results)
    assert results[0].error.code == "10"
    assert results[1].error.message.startswith("not attempted")
    assert postmark_peer.requests == 1


def test_an_unreachable_esp_is_transient_and_not_in_doubt():
    settings = {"esp": "postmark", "server_token": "t",
                "api_url": f"http://127.0.0.1:{free_port()}/", "connect_timeout": 1}

    results = _send(settings, [_outbound(n) for n in (1, 2)])

    assert all(r.error.code == "connect_failed" for r in results)
    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


def test_the_rest_of_a_batch_after_the_esp_could_not_be_reached_gets_no_result():
    settings = {"esp": "postmark", "server_token": "t", "concurrency": 1, "batch_size": 1,
                "api_url": f"http://127.0.0.1:{free_port()}/", "connect_timeout": 1}

    results = _send(settings, [_outbound(n) for n in (1, 2, 3)])

    assert [(r.message_id, r.error.code) for r in results] == [(1, "connect_failed")]


def test_a_mailgun_gateway_sends_through_the_same_adapter(postmark_peer):
    results = _send(postmark_peer.mailgun_settings(), [_outbound(5)])

    [sent] = postmark_peer.sent
    assert results[0].ok
    assert results[0].provider_id == sent.message_id
    assert sent.endpoint == "/v3/mg.engage.example.com/messages"
    assert sent.metadata == {"engage_message_id": "5"}
    assert sent.headers["Message-Id"].startswith("<engage.5.7@")


def test_a_recipient_mailgun_refuses_fails_for_good_and_the_rest_is_sent(postmark_peer):
    postmark_peer.script.invalid.add("m1@members.example.com")

    results = _send(postmark_peer.mailgun_settings(), [_outbound(n) for n in (1, 2)])

    assert results[0].error.permanent
    assert results[0].error.code == "400"
    assert "not a valid address" in results[0].error.message
    assert results[1].ok


# --- health -------------------------------------------------------------------------------

def test_health_asks_postmark_whether_it_knows_the_server_token(postmark_peer):
    ok, detail = _gateway(postmark_peer.gateway_settings()).health()

    assert ok, detail
    assert "postmark accepted the credentials" in detail


def test_health_reports_a_wrong_server_token_with_postmarks_code(postmark_peer):
    ok, detail = _gateway(postmark_peer.gateway_settings(server_token="revoked")).health()

    assert not ok
    assert detail.startswith("transient [10]: postmark answered 401")


def test_health_asks_mailgun_about_the_sender_domain(postmark_peer):
    ok, _ = _gateway(postmark_peer.mailgun_settings()).health()
    refused, detail = _gateway(postmark_peer.mailgun_settings(api_key="wrong")).health()

    assert ok
    assert not refused and "answered 401" in detail


def test_health_of_an_unreachable_esp_says_it_cannot_reach_it():
    ok, detail = _gateway({"esp": "postmark", "server_token": "t", "connect_timeout": 1,
                           "api_url": f"http://127.0.0.1:{free_port()}/"}).health()

    assert not ok
    assert detail.startswith("transient [connect_failed]")


@pytest.mark.django_db
def test_the_esp_credential_is_stored_encrypted_apart_from_the_plain_settings(postmark_peer):
    gateway = GatewayFactory(provider="anymail", settings=postmark_peer.gateway_settings())

    gateway.refresh_from_db()
    assert "server_token" not in gateway.settings
    assert postmark_peer.server_token not in gateway.secrets
    assert gateway.adapter_settings()["server_token"] == postmark_peer.server_token


# --- settings -----------------------------------------------------------------------------

def test_settings_name_the_credential_the_esp_requires():
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="email", provider="anymail",
                                settings={"esp": "postmark"})

    assert error.value.message_dict["settings"] == [
        "server_token: required by postmark (anymail's POSTMARK_SERVER_TOKEN)"]


def test_settings_accept_any_esp_anymail_has_a_backend_for():
    gateway_config_validate(channel="email", provider="anymail",
                            settings={"esp": "mailgun", "api_key": "key-123",
                                      "api_url": "https://api.eu.mailgun.net/v3"})


@pytest.mark.parametrize("batch_size", [0, 501, 2.5, True, "500"])
def test_settings_refuse_a_batch_size_that_is_not_a_whole_number_from_1_to_500(batch_size):
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="email", provider="anymail", settings={
            "esp": "postmark", "server_token": "t", "batch_size": batch_size})

    assert error.value.message_dict["settings"] == [
        "batch_size: must be a whole number of messages per call, 1 to 500"]


@pytest.mark.parametrize("concurrency", [0, 101, 2.5, True, "16"])
def test_settings_refuse_a_concurrency_that_is_not_a_whole_number_from_1_to_100(concurrency):
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="email", provider="anymail", settings={
            "esp": "postmark", "server_token": "t", "concurrency": concurrency})

    assert error.value.message_dict["settings"] == [
        "concurrency: must be a whole number of messages in flight, 1 to 100"]


def test_settings_refuse_an_esp_anymail_does_not_know():
    with pytest.raises(ValidationError) as error:
        gateway_config_validate(channel="email", provider="anymail",
                                settings={"esp": "carrier_pigeon", "api_key": "x"})

    assert "carrier_pigeon" in error.value.message_dict["settings"][0]


# --- tracking webhooks --------------------------------------------------------------------

def _webhook_url(live_server) -> str:
    return live_server.url + reverse("anymail:postmark_tracking_webhook")


def _sent_through_peer(peer: PostmarkPeer, **member_fields) -> tuple[Message, Sent]:
    """A message sent through an anymail gateway to the peer and recorded as sent."""
    gateway = GatewayFactory(provider="anymail", settings=peer.gateway_settings())
    member = consenting_member(**member_fields)
    message = MessageFactory(member=member, address=member.email, mailing__gateway=gateway,
                             status=Message.Status.SENDING)
    results = gateway_send(gateway=gateway, batch=[OutboundMessage(
        message_id=message.pk, address=member.email, subject="Hi", body="Hello")])
    messages_record_results(results=results, attempts={message.pk: 1}, gateway_id=gateway.pk)
    message.refresh_from_db()
    [sent] = [s for s in peer.sent if s.metadata["engage_message_id"] == str(message.pk)]
    assert message.provider_id == sent.message_id
    return message, sent


def _status_after(peer, live_server, kind: str, **fields) -> tuple[Message, int]:
    message, sent = _sent_through_peer(peer, **fields)
    status, _ = peer.post_event(_webhook_url(live_server), kind, sent, auth=WEBHOOK_AUTH)
    receipts_apply()
    message.refresh_from_db()
    return message, status


@pytest.mark.django_db(transaction=True)
def test_a_delivery_event_marks_the_message_delivered(postmark_peer, live_server,
                                                      webhook_secret):
    message, status = _status_after(postmark_peer, live_server, "Delivery")

    assert status == 200
    assert message.status == Message.Status.DELIVERED
    assert message.delivered_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_hard_bounce_marks_the_message_bounced_and_suppresses_the_address(
        postmark_peer, live_server, webhook_secret):
    message, _ = _status_after(postmark_peer, live_server, "Bounce")

    assert message.status == Message.Status.BOUNCED
    assert Suppression.objects.filter(channel="email", address=message.address,
                                      reason=Suppression.Reason.HARD_BOUNCE).exists()


@pytest.mark.django_db(transaction=True)
def test_a_soft_bounce_is_undelivered_and_suppresses_nothing(postmark_peer, live_server,
                                                             webhook_secret):
    message, sent = _sent_through_peer(postmark_peer)

    postmark_peer.post_event(_webhook_url(live_server), "Bounce", sent, auth=WEBHOOK_AUTH,
                             Type="SoftBounce", TypeCode=4096)
    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED
    assert not Suppression.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_open_event_marks_the_message_opened(postmark_peer, live_server, webhook_secret):
    message, _ = _status_after(postmark_peer, live_server, "Open")

    assert message.status == Message.Status.OPENED
    assert message.opened_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_click_event_marks_the_message_clicked_with_the_link(postmark_peer, live_server,
                                                               webhook_secret):
    message, _ = _status_after(postmark_peer, live_server, "Click")

    assert message.status == Message.Status.CLICKED
    receipt = ProviderReceipt.objects.get(provider_id=message.provider_id)
    assert receipt.detail == "https://club.example.com/offer"


@pytest.mark.django_db(transaction=True)
def test_a_spam_complaint_marks_the_message_complained_and_suppresses_the_address(
        postmark_peer, live_server, webhook_secret):
    message, _ = _status_after(postmark_peer, live_server, "SpamComplaint")

    assert message.status == Message.Status.COMPLAINED
    assert Suppression.objects.filter(channel="email", address=message.address,
                                      reason=Suppression.Reason.COMPLAINT).exists()


@pytest.mark.django_db(transaction=True)
def test_an_unsubscribe_event_withdraws_the_members_email_consent(postmark_peer, live_server,
                                                                  webhook_secret):
    message, status = _status_after(postmark_peer, live_server, "SubscriptionChange")

    assert status == 200
    consent = Consent.objects.get(member=message.member, channel="email",
                                  purpose="marketing", category=None)
    assert consent.state == Consent.State.WITHDRAWN
    assert consent.source == ConsentSource.UNSUBSCRIBE_LINK
    assert message.member.consent_events.filter(
        action="withdraw", source=ConsentSource.UNSUBSCRIBE_LINK).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_left_in_doubt_takes_the_esps_id_from_its_first_event(
        postmark_peer, live_server, webhook_secret):
    # given: the ESP took the message but never answered, so it is in doubt without an id
    gateway = GatewayFactory(provider="anymail", settings=postmark_peer.gateway_settings(
        timeout=0.5, batch_size=1))
    member = consenting_member()
    message = MessageFactory(member=member, address=member.email, mailing__gateway=gateway,
                             status=Message.Status.SENDING)
    postmark_peer.script.stalled.add(member.email)
    results = gateway_send(gateway=gateway, batch=[OutboundMessage(
        message_id=message.pk, address=member.email, subject="Hi", body="Hello")])
    messages_record_results(results=results, attempts={message.pk: 1}, gateway_id=gateway.pk)
    message.refresh_from_db()
    assert (message.status, message.provider_id) == (Message.Status.UNKNOWN, "")
    [sent] = postmark_peer.sent

    # when: its delivery, then its open, come back by webhook
    postmark_peer.post_event(_webhook_url(live_server), "Delivery", sent, auth=WEBHOOK_AUTH)
    postmark_peer.post_event(_webhook_url(live_server), "Open", sent, auth=WEBHOOK_AUTH)
    receipts_apply()

    # then
    message.refresh_from_db()
    assert message.provider_id == sent.message_id
    assert message.status == Message.Status.OPENED
    assert message.delivered_at is not None


@pytest.mark.django_db(transaction=True)
def test_an_event_never_replaces_the_esp_id_a_message_has(postmark_peer, live_server,
                                                           webhook_secret):
    message, sent = _sent_through_peer(postmark_peer)
    other = replace(sent, message_id="b7bc2f4a-e38e-4336-af7d-e6c392c2f817")

    postmark_peer.post_event(_webhook_url(live_server), "Delivery", other, auth=WEBHOOK_AUTH)
    receipts_apply()

    message.refresh_from_db()
    assert message.provider_id == sent.message_id
    assert message.status == Message.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_a_webhook_without_basic_auth_is_refused_and_changes_nothing(postmark_peer,
                                                                     live_server,
                                                                     webhook_secret):
    _, sent = _sent_through_peer(postmark_peer)

    status, _ = postmark_peer.post_event(_webhook_url(live_server), "Delivery", sent)
    wrong, _ = postmark_peer.post_event(_webhook_url(live_server), "Delivery", sent,
                                        auth=("postmark", "guess"))

    assert (status, wrong) == (400, 400)
    assert not ProviderReceipt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_webhooks_are_refused_while_no_secret_is_configured(postmark_peer, live_server,
                                                            settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": ""}
    _, sent = _sent_through_peer(postmark_peer)

    status, body = postmark_peer.post_event(_webhook_url(live_server), "Delivery", sent,
                                            auth=WEBHOOK_AUTH)

    assert status == 403
    assert "webhook_not_configured" in body
    assert not ProviderReceipt.objects.exists()


# --- end to end ---------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_an_email_mailing_goes_out_through_the_esp_and_its_deliveries_come_back(
        postmark_peer, live_server, webhook_secret):
    # given a mailing to three consenting members through a Postmark gateway
    for _ in range(3):
        consenting_member()
    mailing = MailingFactory(gateway=GatewayFactory(
        provider="anymail", settings=postmark_peer.gateway_settings()))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    # when its batch is dispatched and Postmark reports each delivery
    outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)
    for sent in postmark_peer.sent:
        postmark_peer.post_event(_webhook_url(live_server), "Delivery", sent,
                                 auth=WEBHOOK_AUTH)
    receipts_apply()

    # then every message was sent once, maps back, and is delivered
    assert outcome["sent"] == 3
    messages = {m.pk: m for m in Message.objects.filter(mailing=mailing)}
    sent = postmark_peer.sent
    assert len(sent) == 3
    assert {int(s.metadata["engage_message_id"]) for s in sent} == set(messages)
    assert {messages[int(s.metadata["engage_message_id"])].provider_id
            for s in sent} == {s.message_id for s in sent}
    assert all(s.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
               for s in sent)
    assert {m.status for m in messages.values()} == {Message.Status.DELIVERED}
