from __future__ import annotations

import email
import email.policy
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError

from communications.models import Mailing
from communications.renderers import template_validate
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from members.models import Consent, Member
from members.unsubscribe import UnsubscribeToken, unsubscribe_token_read
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.ENGAGE_PUBLIC_URL = "https://club.example.com"


def _sent_mailing(*, gateway, template=None) -> Mailing:
    mailing = MailingFactory(gateway=gateway, template=template or TemplateFactory())
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)
    return mailing


def _link(header: str) -> str:
    # The long header is folded before the "<" (legal whitespace, dropped by readers); a fold
    # inside the URL would leave a space in it and fail the checks that read the token.
    header = header.strip()
    assert header.startswith("<") and header.endswith(">") and " " not in header
    return header[1:-1]


def test_list_unsubscribe_headers_arrive_on_the_wire_through_smtp(smtp_peer):
    member = consenting_member()

    mailing = _sent_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))

    [received] = smtp_peer.received
    link = _link(received.message["List-Unsubscribe"])
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith("https://club.example.com/u/")
    token = urlsplit(link).path.split("/")[2]
    assert unsubscribe_token_read(token) == UnsubscribeToken(
        member_id=member.pk, channel="email", mailing_id=mailing.pk)


def test_one_click_post_to_the_link_from_the_wire_unsubscribes(smtp_peer, client):
    member = consenting_member()
    _sent_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))
    link = _link(smtp_peer.received[0].message["List-Unsubscribe"])

    response = client.post(urlsplit(link).path, "List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert Consent.objects.get(member=member, channel="email").state == "withdrawn"


def test_template_placeholder_gets_the_same_link_as_the_header(smtp_peer):
    consenting_member()
    template = TemplateFactory(body="Leave: {{ unsubscribe_url }}",
                               html_body='<a href="{{ unsubscribe_url }}">Unsubscribe</a>')

    _sent_mailing(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
                  template=template)

    message = smtp_peer.received[0].message
    link = _link(message["List-Unsubscribe"])
    assert message.get_body(("plain",)).get_content().strip() == f"Leave: {link}"
    assert f'href="{link}"' in message.get_body(("html",)).get_content()


def test_file_sink_writes_the_headers_too(settings, tmp_path):
    settings.DEBUG = True  # sinks are development-only
    consenting_member()
    gateway = GatewayFactory(provider="file_sink", settings={"directory": str(tmp_path)})

    _sent_mailing(gateway=gateway)

    [path] = (tmp_path / f"gateway-{gateway.pk}").iterdir()
    written = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert _link(written["List-Unsubscribe"]).startswith("https://club.example.com/u/")
    assert written["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_email_template_may_use_the_unsubscribe_url():
    template_validate(channel="email", subject="News",
                      body="Unsubscribe: {{ unsubscribe_url }}",
                      html_body='<a href="{{ unsubscribe_url }}">Unsubscribe</a>')


def test_sms_template_may_not_use_the_unsubscribe_url():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="sms", subject="", body="Stop: {{ unsubscribe_url }}")

    assert "unsubscribe_url" in error.value.message_dict["body"][0]


def test_member_who_unsubscribed_is_not_sent_the_next_mailing(smtp_peer, client):
    member = consenting_member()
    gateway = GatewayFactory(settings=smtp_peer.gateway_settings())
    _sent_mailing(gateway=gateway)
    client.post(urlsplit(_link(smtp_peer.received[0].message["List-Unsubscribe"])).path,
                {"List-Unsubscribe": "One-Click"})

    _sent_mailing(gateway=gateway)

    assert len(smtp_peer.received) == 1
    assert Member.objects.get(pk=member.pk).messages.filter(skip_reason="opted_out").count() == 1
