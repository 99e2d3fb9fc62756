from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from communications.models import Message, MessageStatusChange
from communications.services.gateways import gateway_test_send
from tests.communications.factories import GatewayFactory
from tests.members.factories import SuppressionFactory
from tests.peers.smpp import SmppPeer
from tests.peers.smtp import free_port

pytestmark = pytest.mark.django_db

Status = Message.Status


@pytest.fixture
def smpp_peer() -> Iterator[SmppPeer]:
    peer = SmppPeer().start()
    yield peer
    peer.stop()


def test_a_test_email_reaches_the_server_with_the_typed_subject_and_text(smtp_peer):
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())

    result = gateway_test_send(gateway=gateway, address="Ops@Example.com", subject="Ping",
                               text="Is this relay alive?")

    [received] = smtp_peer.received
    assert received.rcpt_tos == ["ops@example.com"]
    assert received.message["Subject"] == "Ping"
    assert received.message.get_content().strip() == "Is this relay alive?"
    assert result.error is None and result.outcome.startswith("sent (provider id <engage.")


def test_the_test_is_recorded_as_a_test_message_of_no_mailing_and_no_member(smtp_peer):
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())

    result = gateway_test_send(gateway=gateway, address="ops@example.com", text="Hi")

    message = Message.objects.get()
    assert (message.pk, message.is_test, message.mailing_id, message.member_id) == (
        result.message.pk, True, None, None)
    assert (message.status, message.gateway_id, message.channel) == (Status.SENT, gateway.pk,
                                                                     "email")
    assert message.provider_id == result.message.provider_id != ""
    assert message.content == {"subject": f"Test of gateway {gateway.name}", "body": "Hi"}
    assert list(MessageStatusChange.objects.filter(message_id=message.pk)
                .order_by("pk").values_list("status", flat=True)) == [Status.SENDING,
                                                                      Status.SENT]


def test_a_refused_recipient_shows_a_permanent_failure_with_the_servers_reply(smtp_peer):
    smtp_peer.handler.refuse.add("nobody@example.com")
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())

    result = gateway_test_send(gateway=gateway, address="nobody@example.com", text="Hi")

    assert (result.message.status, result.message.error_code) == (Status.FAILED, "550")
    assert result.outcome.startswith("permanent [550]: 550 5.1.1 <nobody@example.com>")


def test_an_unreachable_gateway_fails_the_test_at_once_as_transient():
    gateway = GatewayFactory(settings={"host": "127.0.0.1", "port": free_port(), "timeout": 2})

    result = gateway_test_send(gateway=gateway, address="ops@example.com", text="Hi")

    # Not queued for a retry: the operator reads the answer and tries again.
    assert result.message.status == Status.FAILED
    assert result.outcome.startswith("transient: cannot connect to SMTP server")


def test_a_test_sms_goes_through_the_smsc(smpp_peer):
    gateway = GatewayFactory(channel="sms", provider="smpp",
                             settings=smpp_peer.gateway_settings())

    result = gateway_test_send(gateway=gateway, address="+49 151 12345678",
                               text="Gateway test")

    assert smpp_peer.messages() == [("4915112345678", "Gateway test")]
    assert result.message.status == Status.SENT
    assert result.message.provider_id == smpp_peer.submits[0].message_id


def test_an_address_not_of_the_channel_is_refused_before_anything_is_sent(smtp_peer):
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())

    with pytest.raises(ValidationError) as refused:
        gateway_test_send(gateway=gateway, address="+4915112345678", text="Hi")

    assert "address" in refused.value.message_dict
    assert not Message.objects.exists() and smtp_peer.received == []


def test_a_suppressed_address_is_refused(smtp_peer):
    SuppressionFactory(address="bounced@example.com")
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())

    with pytest.raises(ValidationError) as refused:
        gateway_test_send(gateway=gateway, address="bounced@example.com", text="Hi")

    assert "suppression list" in refused.value.message_dict["address"][0]


def test_an_inactive_gateway_is_not_tested(smtp_peer):
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings(), is_active=False)

    with pytest.raises(ValidationError) as refused:
        gateway_test_send(gateway=gateway, address="ops@example.com", text="Hi")

    assert refused.value.message_dict == {"gateway": ["this gateway is not active"]}


# -- the admin --------------------------------------------------------------------------------


def test_the_gateway_page_links_to_its_send_test_page(marketer_client):
    gateway = GatewayFactory()

    html = marketer_client.get(reverse("admin:communications_gateway_change",
                                       args=[gateway.pk])).content.decode()

    assert reverse("admin:communications_gateway_send_test", args=[gateway.pk]) in html


def test_the_send_test_page_sends_and_shows_the_classified_answer(marketer_client, smtp_peer):
    smtp_peer.handler.refuse.add("nobody@example.com")
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())
    url = reverse("admin:communications_gateway_send_test", args=[gateway.pk])

    html = marketer_client.post(url, {"address": "nobody@example.com", "subject": "",
                                      "text": "Hi"}).content.decode()

    assert 'class="gateway-test-status">Failed<' in html
    assert "permanent [550]: 550 5.1.1" in html


def test_the_send_test_page_names_a_bad_address(marketer_client, smtp_peer):
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())
    url = reverse("admin:communications_gateway_send_test", args=[gateway.pk])

    html = marketer_client.post(url, {"address": "not-an-email", "text": "Hi"}
                                ).content.decode()

    assert "is not a valid email address" in html
    assert not Message.objects.exists()
