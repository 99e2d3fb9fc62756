from __future__ import annotations

import re

import pytest

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from communications.transactional import email_confirmation_send, transactional_message_send
from members.models import ConsentEvent, Suppression
from members.services import consent_record
from members.services.double_opt_in import email_confirmation_token
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def double_opt_in(settings):
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = True
    settings.ENGAGE_PUBLIC_URL = "https://club.example.com"


def _grant_email(member, django_capture_on_commit_callbacks) -> None:
    """Grant email consent and run what waits for the commit, as a real commit would."""
    with django_capture_on_commit_callbacks(execute=True):
        consent_record(member=member, channel="email", action="grant", source="app")


def _skip_reason(member) -> str:
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)
    return Message.objects.get(mailing=mailing, member=member).skip_reason


def test_granting_email_consent_asks_for_confirmation_when_the_program_requires_it(
        double_opt_in, django_capture_on_commit_callbacks):
    member = MemberFactory(email="ana@example.com")

    _grant_email(member, django_capture_on_commit_callbacks)

    message = Message.objects.get(member=member, mailing=None)
    assert (message.address, message.status, message.content["kind"]) == (
        "ana@example.com", "queued", "email_confirmation")


def test_no_confirmation_is_asked_without_double_opt_in(django_capture_on_commit_callbacks):
    member = MemberFactory()

    _grant_email(member, django_capture_on_commit_callbacks)

    assert not Message.objects.filter(member=member).exists()


def test_unconfirmed_address_is_not_marketable(double_opt_in):
    member = consenting_member(email_verified_at=None)

    assert _skip_reason(member) == "unconfirmed"


def test_confirmation_email_goes_out_through_the_email_gateway_and_confirms_the_address(
        double_opt_in, smtp_peer, client, django_capture_on_commit_callbacks):
    # given an email gateway, and a member who just granted email consent
    GatewayFactory(settings=smtp_peer.gateway_settings())
    member = MemberFactory(email="ana@example.com", first_name="Ana")
    _grant_email(member, django_capture_on_commit_callbacks)
    message = Message.objects.get(member=member, mailing=None)

    # when the worker sends it and the member follows the link and confirms
    assert transactional_message_send(message_id=message.pk) == "sent"
    [received] = smtp_peer.received
    assert received.rcpt_tos == ["ana@example.com"]
    text = received.message.get_content()
    url = re.search(r"https://club\.example\.com(/confirm/\S+/)", text).group(1)
    assert "Ana" in text
    page = client.get(url)
    assert page.status_code == 200 and b"Yes, confirm my address" in page.content
    member.refresh_from_db()
    assert member.email_verified_at is None, "opening the link alone must not confirm"
    confirmed = client.post(url, REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="Mail/1.0")

    # then the address is confirmed, the ledger says how, and mailings reach the member
    assert confirmed.status_code == 200 and b"Thank you" in confirmed.content
    member.refresh_from_db()
    assert member.email_verified_at is not None
    event = ConsentEvent.objects.filter(member=member).latest("id")
    assert (event.source, event.action, event.ip_address, event.user_agent) == (
        "double_opt_in", "grant", "203.0.113.7", "Mail/1.0")
    assert _skip_reason(member) == ""


def test_confirmation_link_for_a_changed_address_is_refused(double_opt_in, client):
    member = MemberFactory(email="old@example.com")
    token = email_confirmation_token(member=member)
    member.email = "new@example.com"
    member.save()

    response = client.post(f"/confirm/{token}/")

    assert response.status_code == 400
    assert b"no longer used" in response.content
    member.refresh_from_db()
    assert member.email_verified_at is None


def test_tampered_confirmation_link_is_refused(double_opt_in, client):
    token = email_confirmation_token(member=MemberFactory())

    response = client.post(f"/confirm/{token[:-2]}xx/")

    assert response.status_code == 400
    assert b"not valid" in response.content


def test_expired_confirmation_link_is_refused(double_opt_in, client, settings):
    settings.ENGAGE_EMAIL_CONFIRMATION_MAX_AGE = -1
    token = email_confirmation_token(member=MemberFactory())

    response = client.post(f"/confirm/{token}/")

    assert response.status_code == 400
    assert b"expired" in response.content


def test_a_second_request_within_minutes_sends_no_second_confirmation(double_opt_in):
    member = MemberFactory()

    first = email_confirmation_send(member.pk)
    second = email_confirmation_send(member.pk)

    assert first is not None and second is None
    assert Message.objects.filter(member=member, mailing=None).count() == 1


def test_confirmation_to_a_suppressed_address_is_skipped(double_opt_in):
    member = MemberFactory(email="bounced@example.com")
    Suppression.objects.create(channel="email", address="bounced@example.com",
                               reason="hard_bounce")

    message = email_confirmation_send(member.pk)

    assert (message.status, message.skip_reason) == ("skipped", "suppressed")


def test_confirmation_without_an_email_gateway_fails_with_a_reason(double_opt_in):
    message = email_confirmation_send(MemberFactory().pk)

    assert transactional_message_send(message_id=message.pk) == "failed"
    message.refresh_from_db()
    assert message.error_code == "no_gateway"


def test_a_transactional_message_is_sent_once_even_if_its_task_runs_twice(
        double_opt_in, smtp_peer):
    GatewayFactory(settings=smtp_peer.gateway_settings())
    message = email_confirmation_send(MemberFactory().pk)

    transactional_message_send(message_id=message.pk)
    transactional_message_send(message_id=message.pk)

    assert len(smtp_peer.received) == 1


def test_a_transactional_message_gone_before_its_task_ran_is_not_an_error():
    # Its member was erased between the commit and the task: there is nothing to send.
    assert transactional_message_send(message_id=987654321) == "missing"
