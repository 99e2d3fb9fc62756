from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from communications.webhooks import webhook_signature
from members.models import Consent, ConsentEvent, Member
from members.services.keywords import sms_inbound_apply
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

SECRET = "inbound-test-secret"
PHONE = "+4915112345678"


@pytest.fixture
def sms_gateway():
    return GatewayFactory(channel="sms", provider="file_sink", name="SMS relay",
                          settings={"inbound_secret": SECRET})


def _post(client, gateway, payload: dict, *, secret: str = SECRET, as_json: bool = True,
          signature: str | None = None):
    if as_json:
        body, content_type = json.dumps(payload).encode(), "application/json"
    else:
        body, content_type = urlencode(payload).encode(), "application/x-www-form-urlencoded"
    headers = {"X-Engage-Signature": signature or webhook_signature(secret=secret, body=body)}
    return client.post(reverse("sms-inbound", args=[gateway.pk]), body,
                       content_type=content_type, headers=headers)


def _sms_state(member: Member) -> str | None:
    return (Consent.objects.filter(member=member, channel="sms", purpose="marketing",
                                   category=None)
            .values_list("state", flat=True).first())


def test_signed_stop_withdraws_sms_consent_of_every_member_holding_the_number(client,
                                                                              sms_gateway):
    parent = consenting_member(channel="sms", phone=PHONE)
    child = consenting_member(channel="sms", phone=PHONE)
    other = consenting_member(channel="sms")

    response = _post(client, sms_gateway, {"from": PHONE, "text": "STOP"})

    assert response.status_code == 200
    assert response.json() == {"withdrawn": 2}
    assert [_sms_state(m) for m in (parent, child, other)] == ["withdrawn", "withdrawn",
                                                               "granted"]


def test_stop_is_recorded_with_its_source_text_and_gateway(client, sms_gateway):
    member = consenting_member(channel="sms", phone=PHONE)

    _post(client, sms_gateway, {"from": PHONE, "text": "Stop"})

    event = ConsentEvent.objects.get(member=member)
    assert (event.channel, event.action, event.source, event.consent_text, event.user_agent) == (
        "sms", "withdraw", "sms_stop", "Stop", "SMS gateway SMS relay")


def test_stop_excludes_the_member_from_the_next_sms_mailing(client, sms_gateway):
    member = consenting_member(channel="sms", phone=PHONE)
    _post(client, sms_gateway, {"from": PHONE, "text": "STOP"})

    mailing = mailing_schedule(mailing=MailingFactory(
        gateway=sms_gateway, template=TemplateFactory(channel="sms", subject="")))
    mailing_prepare(mailing_id=mailing.pk)

    assert Message.objects.get(mailing=mailing, member=member).skip_reason == "opted_out"


def test_form_encoded_stop_from_a_number_without_plus_works(client, sms_gateway):
    member = consenting_member(channel="sms", phone=PHONE)

    response = _post(client, sms_gateway, {"from": PHONE.lstrip("+"), "text": "stop"},
                     as_json=False)

    assert response.json() == {"withdrawn": 1}
    assert _sms_state(member) == "withdrawn"


def test_wrong_signature_is_forbidden_and_changes_nothing(client, sms_gateway):
    member = consenting_member(channel="sms", phone=PHONE)

    response = _post(client, sms_gateway, {"from": PHONE, "text": "STOP"},
                     secret="someone-elses-secret")

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert _sms_state(member) == "granted"


def test_missing_signature_is_forbidden(client, sms_gateway):
    response = client.post(reverse("sms-inbound", args=[sms_gateway.pk]),
                           {"from": PHONE, "text": "STOP"})

    assert response.status_code == 403


def test_gateway_without_an_inbound_secret_refuses_every_call(client):
    gateway = GatewayFactory(channel="sms", provider="file_sink", settings={})

    response = _post(client, gateway, {"from": PHONE, "text": "STOP"}, secret="")

    assert response.status_code == 403
    assert response.json()["code"] == "inbound_not_configured"


def test_unknown_or_email_gateway_is_not_found(client):
    email_gateway = GatewayFactory(settings={"host": "x", "inbound_secret": SECRET})

    assert _post(client, email_gateway, {"from": PHONE, "text": "STOP"}).status_code == 404
    missing = client.post(reverse("sms-inbound", args=[email_gateway.pk + 1000]), {})
    assert missing.status_code == 404


def test_missing_field_is_named(client, sms_gateway):
    response = _post(client, sms_gateway, {"from": PHONE})

    assert response.status_code == 400
    assert list(response.json()) == ["text"]


def test_invalid_sender_number_of_a_stop_is_named_as_from(client, sms_gateway):
    response = _post(client, sms_gateway, {"from": "12", "text": "STOP"})

    assert response.status_code == 400
    assert "from" in response.json()


def test_text_that_is_not_a_keyword_changes_nothing(client, sms_gateway):
    member = consenting_member(channel="sms", phone=PHONE)

    response = _post(client, sms_gateway, {"from": PHONE, "text": "Please don't stop"})

    assert response.json() == {"withdrawn": 0}
    assert _sms_state(member) == "granted"
    assert not ConsentEvent.objects.filter(member=member).exists()


def test_local_keyword_in_any_case_with_trailing_punctuation_withdraws():
    member = consenting_member(channel="sms", phone=PHONE)

    events = sms_inbound_apply(phone=PHONE, text="  стоп! ")

    assert [e.member_id for e in events] == [member.pk]
    assert _sms_state(member) == "withdrawn"


def test_keywords_come_from_the_setting(settings):
    settings.ENGAGE_SMS_STOP_KEYWORDS = ["HALT"]
    member = consenting_member(channel="sms", phone=PHONE)

    assert sms_inbound_apply(phone=PHONE, text="STOP") == []
    assert len(sms_inbound_apply(phone=PHONE, text="halt")) == 1
    assert _sms_state(member) == "withdrawn"


def test_a_second_stop_records_nothing_new():
    member = consenting_member(channel="sms", phone=PHONE)
    sms_inbound_apply(phone=PHONE, text="STOP")

    assert sms_inbound_apply(phone=PHONE, text="STOP") == []
    assert ConsentEvent.objects.filter(member=member).count() == 1
