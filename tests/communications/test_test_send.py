from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services import (
    mailing_prepare,
    mailing_schedule,
    mailing_test_send,
    members_by_keys,
    messages_claim,
)
from communications.services.test_sends import TEST_RECIPIENTS_MAX
from tests.communications.factories import (
    FrequencyCapFactory,
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import (
    DeviceFactory,
    MemberFactory,
    SuppressionFactory,
    consenting_member,
)
from tests.peers.fcm import FcmPeer
from tests.peers.smpp import SmppPeer
from tests.peers.smtp import free_port

pytestmark = pytest.mark.django_db

Status = Message.Status


@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    peer = FcmPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def smpp_peer() -> Iterator[SmppPeer]:
    peer = SmppPeer().start()
    yield peer
    peer.stop()


def _email_mailing(smtp_peer, **fields) -> Mailing:
    return MailingFactory(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
                          **fields)


def test_a_member_gets_the_message_rendered_for_them_with_the_subject_marked_as_a_test(
        smtp_peer):
    member = consenting_member(first_name="Anna", last_name="Berg")
    mailing = _email_mailing(smtp_peer)

    mailing_test_send(mailing=mailing, member_ids=[member.pk])

    [received] = smtp_peer.received
    assert received.rcpt_tos == [member.email]
    assert received.message["Subject"] == "[TEST] Hello Anna"
    assert "Dear Anna Berg" in received.message.get_content()


def test_a_test_is_recorded_as_a_test_message_with_the_gateways_answer(smtp_peer, marketer):
    member = consenting_member()
    mailing = _email_mailing(smtp_peer)

    [message] = mailing_test_send(mailing=mailing, member_ids=[member.pk], by=marketer)

    assert (message.is_test, message.mailing_id, message.member_id) == (True, mailing.pk,
                                                                         member.pk)
    assert message.status == Status.SENT
    assert message.provider_id
    assert message.gateway_id == mailing.gateway_id
    history = list(message.changes.order_by("pk").values_list("status", "source", "detail"))
    assert history[0] == (Status.SENDING, "operator", "test send by marketer")
    assert history[-1][:2] == (Status.SENT, "dispatch")


def test_a_typed_address_gets_the_text_rendered_for_the_chosen_sample_member(smtp_peer):
    sample = MemberFactory(first_name="Clara", last_name="Stein", external_id="C-1")
    mailing = _email_mailing(smtp_peer)

    [message] = mailing_test_send(mailing=mailing, addresses=["Tester@Example.com"],
                                  sample_member_id=sample.pk)

    [received] = smtp_peer.received
    assert received.rcpt_tos == ["tester@example.com"]
    assert received.message["Subject"] == "[TEST] Hello Clara"
    assert "member number is C-1" in received.message.get_content()
    assert (message.member_id, message.address, message.is_test) == (
        None, "tester@example.com", True)


def test_a_typed_address_without_a_sample_member_has_the_member_fields_empty(smtp_peer):
    mailing = _email_mailing(smtp_peer)

    mailing_test_send(mailing=mailing, addresses=["tester@example.com"])

    [received] = smtp_peer.received
    assert received.message["Subject"] == "[TEST] Hello"
    assert "Dear , your member number is ." in received.message.get_content()


def test_a_typed_addresss_unsubscribe_link_unsubscribes_no_member(smtp_peer):
    mailing = _email_mailing(smtp_peer, template=TemplateFactory(
        body="Leave: {{ unsubscribe_url }}"))

    mailing_test_send(mailing=mailing, addresses=["tester@example.com"])

    [received] = smtp_peer.received
    assert "https://unsubscribe.invalid/test-send" in received.message.get_content()
    assert received.message["List-Unsubscribe"] is None


def test_an_sms_test_goes_through_the_smpp_gateway_to_the_member_and_the_typed_phone(
        smpp_peer):
    member = consenting_member(channel="sms", first_name="Anna")
    mailing = MailingFactory(
        template=TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}"),
        gateway=GatewayFactory(channel="sms", provider="smpp",
                               settings=smpp_peer.gateway_settings()))

    sent = mailing_test_send(mailing=mailing, member_ids=[member.pk],
                             addresses=["+49 151 99999999"])

    assert [m.status for m in sent] == [Status.SENT, Status.SENT]
    assert sorted(smpp_peer.messages()) == sorted([
        (member.phone.removeprefix("+"), "Hi Anna"), ("4915199999999", "Hi ")])


def test_a_push_test_goes_to_the_members_most_recently_seen_device(fcm_peer):
    member = consenting_member(channel="push", first_name="Anna")
    DeviceFactory(member=member, token="old-token",
                  last_seen_at=timezone.now() - timedelta(days=3))
    DeviceFactory(member=member, token="new-token", last_seen_at=timezone.now())
    mailing = MailingFactory(
        template=TemplateFactory(channel="push", subject="Hi {{ member.first_name }}",
                                 body="Double points"),
        gateway=GatewayFactory(channel="push", provider="fcm", sender="",
                               settings=fcm_peer.gateway_settings()))

    [message] = mailing_test_send(mailing=mailing, member_ids=[member.pk])

    assert (message.status, message.address) == (Status.SENT, "new-token")
    assert [(p.token, p.title) for p in fcm_peer.received] == [("new-token", "Hi Anna")]


def test_a_refused_recipient_fails_alone_with_the_servers_reply(smtp_peer):
    smtp_peer.handler.refuse.add("refused@example.com")
    mailing = _email_mailing(smtp_peer)

    refused, accepted = mailing_test_send(
        mailing=mailing, addresses=["refused@example.com", "ok@example.com"])

    assert (refused.status, refused.error_code) == (Status.FAILED, "550")
    assert "User unknown" in refused.error
    assert accepted.status == Status.SENT


def test_an_unreachable_gateway_fails_the_test_at_once_instead_of_queueing_it():
    mailing = MailingFactory(gateway=GatewayFactory(
        settings={"host": "127.0.0.1", "port": free_port(), "timeout": 2}))

    [message] = mailing_test_send(mailing=mailing, addresses=["tester@example.com"])

    assert message.status == Status.FAILED
    assert "cannot connect" in message.error


def test_a_scheduled_mailing_can_be_tested(smtp_peer):
    mailing = mailing_schedule(mailing=_email_mailing(smtp_peer),
                               at=timezone.now() + timedelta(days=1))

    [message] = mailing_test_send(mailing=mailing, addresses=["tester@example.com"])

    assert message.status == Status.SENT


def test_a_mailing_being_sent_cannot_be_tested(smtp_peer):
    consenting_member()
    mailing = mailing_schedule(mailing=_email_mailing(smtp_peer))
    mailing_prepare(mailing_id=mailing.pk)

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, addresses=["tester@example.com"])

    assert "state" in error.value.message_dict


def test_more_than_twenty_recipients_are_refused_naming_the_field(smtp_peer):
    mailing = _email_mailing(smtp_peer)
    addresses = [f"tester{n}@example.com" for n in range(TEST_RECIPIENTS_MAX + 1)]

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, addresses=addresses)

    assert list(error.value.message_dict) == ["addresses"]
    assert smtp_peer.received == []
    assert not Message.objects.exists()


def test_a_bad_address_is_refused_naming_the_field_and_nothing_is_sent(smtp_peer):
    mailing = _email_mailing(smtp_peer)

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, addresses=["ok@example.com", "not-an-address"])

    assert "'not-an-address' is not a valid email address" in error.value.message_dict[
        "addresses"]
    assert smtp_peer.received == []


def test_a_suppressed_typed_address_is_refused(smtp_peer):
    SuppressionFactory(channel="email", address="bounced@example.com")
    mailing = _email_mailing(smtp_peer)

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, addresses=["bounced@example.com"])

    assert "suppression list" in error.value.message_dict["addresses"][0]


def test_a_member_who_has_not_consented_to_the_channel_is_refused(smtp_peer):
    member = MemberFactory()
    mailing = _email_mailing(smtp_peer)

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, member_ids=[member.pk])

    assert f"member {member.pk}" in error.value.message_dict["member_ids"][0]
    assert smtp_peer.received == []


def test_an_unknown_member_is_refused_naming_the_field(smtp_peer):
    mailing = _email_mailing(smtp_peer)

    with pytest.raises(ValidationError) as error:
        mailing_test_send(mailing=mailing, member_ids=[987654])

    assert "987654" in error.value.message_dict["member_ids"][0]


def test_members_are_found_by_id_or_external_id_in_one_query(django_assert_num_queries):
    by_id = MemberFactory()
    by_external = MemberFactory(external_id="CARD-77")

    with django_assert_num_queries(1):
        found = members_by_keys(keys=[str(by_id.pk), "CARD-77"])

    assert found == [by_id.pk, by_external.pk]


def test_a_test_does_not_take_the_members_message_of_the_mailing(smtp_peer):
    member = consenting_member()
    mailing = _email_mailing(smtp_peer)
    mailing_test_send(mailing=mailing, member_ids=[member.pk])

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    real = Message.objects.get(mailing=mailing, member=member, is_test=False)
    assert real.status == Status.QUEUED


def test_batch_dispatch_never_claims_a_test_message():
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)
    test = MessageFactory(mailing=mailing, member=consenting_member(), is_test=True,
                          status=Status.QUEUED)

    claimed = messages_claim(mailing_id=mailing.pk, limit=100)

    assert test.pk not in claimed
    assert len(claimed) == 1


def test_a_test_message_does_not_count_against_a_frequency_cap(smtp_peer):
    FrequencyCapFactory(max_messages=1)
    member = consenting_member()
    earlier = _email_mailing(smtp_peer)
    mailing_test_send(mailing=earlier, member_ids=[member.pk])
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)

    claimed = messages_claim(mailing_id=mailing.pk, limit=100)

    assert claimed == [Message.objects.get(mailing=mailing, is_test=False).pk]


def test_the_api_sends_a_test_and_answers_each_messages_status(marketer_client, smtp_peer):
    member = consenting_member()
    mailing = _email_mailing(smtp_peer)

    response = marketer_client.post(
        f"/api/v1/mailings/{mailing.pk}/test-send/",
        {"member_ids": [member.pk], "addresses": ["tester@example.com"]},
        content_type="application/json")

    assert response.status_code == 200
    rows = response.json()
    assert [(row["member"], row["address"], row["status"], row["is_test"]) for row in rows] == [
        (member.pk, member.email, "sent", True), (None, "tester@example.com", "sent", True)]
    assert len(smtp_peer.received) == 2


def test_the_api_answers_400_naming_the_bad_field(marketer_client, smtp_peer):
    mailing = _email_mailing(smtp_peer)

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/test-send/",
                                    {"addresses": ["nope"]}, content_type="application/json")

    assert response.status_code == 400
    assert "addresses" in response.json()


def test_the_api_refuses_a_test_with_no_recipient(marketer_client, smtp_peer):
    mailing = _email_mailing(smtp_peer)

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/test-send/", {},
                                    content_type="application/json")

    assert response.status_code == 400
    assert "member_ids" in response.json()


def test_the_send_a_test_button_sends_and_shows_each_result(marketer_client, smtp_peer):
    member = consenting_member(external_id="CARD-9")
    mailing = _email_mailing(smtp_peer)
    url = f"/admin/communications/mailing/{mailing.pk}/change/"

    response = marketer_client.post(url, {
        "_test_send": "Send a test", "test_send-members": "CARD-9",
        "test_send-addresses": "tester@example.com"}, follow=True)

    assert response.redirect_chain == [(url, 302)]
    shown = [str(m) for m in response.context["messages"]]
    assert f"Test to {member.email} (member {member.pk}): Sent." in shown
    assert "Test to tester@example.com: Sent." in shown
    assert len(smtp_peer.received) == 2
    assert Mailing.objects.get(pk=mailing.pk).state == Mailing.State.DRAFT


def test_the_send_a_test_button_shows_a_bad_address_as_an_error(marketer_client, smtp_peer):
    mailing = _email_mailing(smtp_peer)
    url = f"/admin/communications/mailing/{mailing.pk}/change/"

    response = marketer_client.post(url, {"_test_send": "Send a test",
                                          "test_send-addresses": "nope"}, follow=True)

    [shown] = [str(m) for m in response.context["messages"]]
    assert shown.startswith("Test send: addresses:")
    assert smtp_peer.received == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_marketer_sends_a_test_from_the_mailing_page_in_a_browser(
        browser_page, live_server, django_user_model, smtp_peer):
    from django.urls import reverse
    from playwright.sync_api import expect

    django_user_model.objects.create_superuser("marketer", "m@example.com", "a-long-password")
    mailing = _email_mailing(smtp_peer, template=TemplateFactory(subject="Spring offers"))
    page = browser_page
    page.goto(live_server.url + reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + reverse("admin:index"))
    change = live_server.url + reverse("admin:communications_mailing_change", args=[mailing.pk])

    page.goto(change)
    page.get_by_label("Addresses").fill("tester@example.com")
    page.get_by_role("button", name="Send a test").click()

    expect(page.locator(".messagelist")).to_contain_text("Test to tester@example.com: Sent.")
    [received] = smtp_peer.received
    assert received.message["Subject"] == "[TEST] Spring offers"
    assert Message.objects.get(mailing=mailing).is_test
