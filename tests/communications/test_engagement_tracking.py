"""Engage's own open and click tracking for mailings that switch it on."""
from __future__ import annotations

import re

import pytest
from django.conf import settings

from communications.models import Message, MessageStatusChange
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.tracking import tracked_html
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

Status = Message.Status
HTML = ('<html><body><p>Hi</p><a href="https://shop.example.com/offer?id=7">Offer</a> '
        '<a href="{own}/u/abc">Unsubscribe</a></body></html>')


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def _path(url: str) -> str:
    return url.removeprefix(settings.ENGAGE_PUBLIC_URL)


def test_links_go_through_the_click_redirect_and_a_pixel_is_added():
    html = tracked_html(HTML.format(own=settings.ENGAGE_PUBLIC_URL), message_id=42)

    offer, unsubscribe = _links(html)
    assert _path(offer).startswith("/t/c/")
    assert unsubscribe == f"{settings.ENGAGE_PUBLIC_URL}/u/abc"  # Engage's own links stay
    assert re.search(r'<img src="[^"]*/t/o/[^"]+"[^>]*></body>', html)


def test_a_click_marks_the_message_clicked_and_redirects_to_the_link(client):
    message = MessageFactory(status=Status.SENT)
    html = tracked_html(HTML.format(own=settings.ENGAGE_PUBLIC_URL), message_id=message.pk)

    response = client.get(_path(_links(html)[0]))

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/offer?id=7"
    message.refresh_from_db()
    assert message.status == Status.CLICKED
    assert message.opened_at is not None and message.clicked_at is not None
    assert MessageStatusChange.objects.get(message=message).source == "tracking"


def test_the_pixel_marks_the_message_opened_once(client):
    message = MessageFactory(status=Status.DELIVERED)
    html = tracked_html("<p>Hi</p>", message_id=message.pk)
    pixel = _path(re.search(r'<img src="([^"]+)"', html).group(1))

    first, second = client.get(pixel), client.get(pixel)

    assert (first["Content-Type"], second.status_code) == ("image/gif", 200)
    message.refresh_from_db()
    assert message.status == Status.OPENED
    assert MessageStatusChange.objects.filter(message=message).count() == 1


def test_a_forged_click_token_is_refused_and_changes_nothing(client):
    message = MessageFactory(status=Status.SENT)
    html = tracked_html(HTML.format(own=settings.ENGAGE_PUBLIC_URL), message_id=message.pk)
    token = _path(_links(html)[0]).removeprefix("/t/c/")

    response = client.get(f"/t/c/{token[:-3]}xyz")

    assert response.status_code == 404
    message.refresh_from_db()
    assert message.status == Status.SENT


def test_an_open_after_a_click_does_not_move_the_message_back(client):
    message = MessageFactory(status=Status.CLICKED)
    pixel = _path(re.search(r'<img src="([^"]+)"',
                            tracked_html("<p>x</p>", message_id=message.pk)).group(1))

    client.get(pixel)

    message.refresh_from_db()
    assert message.status == Status.CLICKED


def test_a_tracking_mailing_sends_emails_with_tracked_links(smtp_peer):
    consenting_member()
    mailing = MailingFactory(
        track_engagement=True, gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
        template=TemplateFactory(html_body='<p><a href="https://shop.example.com/">Shop</a></p>'))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    message_batch_dispatch(mailing_id=mailing.pk)

    [received] = smtp_peer.received
    html = received.message.get_body(preferencelist=("html",)).get_content()
    assert "/t/c/" in html and "/t/o/" in html
    assert "https://shop.example.com/" not in html


def test_without_the_switch_links_are_sent_as_written(smtp_peer):
    consenting_member()
    mailing = MailingFactory(
        gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
        template=TemplateFactory(html_body='<p><a href="https://shop.example.com/">Shop</a></p>'))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    message_batch_dispatch(mailing_id=mailing.pk)

    html = smtp_peer.received[0].message.get_body(preferencelist=("html",)).get_content()
    assert 'href="https://shop.example.com/"' in html
    assert "/t/o/" not in html
