"""A push mailing through a Web Push gateway: each member's browser subscription (a web-push
Device) is snapshotted as the message address, and the batches reach a push service on loopback
that decrypts them as the browser would (tests/peers/webpush.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone

from communications.models import Mailing, Message, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from members.models import Device
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import DeviceFactory, consenting_member
from tests.peers.webpush import WebPushPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer() -> Iterator[WebPushPeer]:
    # Any hour will do: quiet hours are tests/communications/test_compliance.py's.
    QuietHours.objects.filter(channel="push").delete()
    peer = WebPushPeer().start()
    yield peer
    peer.stop()


def _browser_member(peer: WebPushPeer, n: int, **fields):
    member = consenting_member(channel="push", **fields)
    DeviceFactory(member=member, platform=Device.Platform.WEBPUSH, token=peer.subscription(n),
                  last_seen_at=timezone.now())
    return member


def _send_webpush_mailing(peer: WebPushPeer) -> Mailing:
    template = TemplateFactory(channel="push", subject="Hi {{ member.first_name }}",
                               body="Double points today, {{ member.full_name }}",
                               link_url="https://club.example.com/offers")
    gateway = GatewayFactory(name="Web push", channel="push", provider="webpush", sender="",
                             settings=peer.gateway_settings())
    mailing = MailingFactory(template=template, gateway=gateway)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    while message_batch_dispatch(mailing_id=mailing.pk)["claimed"]:
        pass
    return mailing


def test_a_push_mailing_reaches_each_members_browser_decrypted_and_personalized(peer):
    ann = _browser_member(peer, 1, first_name="Ann", last_name="Lee")
    bob = _browser_member(peer, 2, first_name="Bob", last_name="Ray")

    mailing = _send_webpush_mailing(peer)

    messages = {m.member_id: m for m in Message.objects.filter(mailing=mailing)}
    pushed = {p.subscription_id: p for p in peer.received}
    assert {sid: (p.payload["title"], p.payload["body"], p.payload["link"])
            for sid, p in pushed.items()} == {
        "1": ("Hi Ann", "Double points today, Ann Lee", "https://club.example.com/offers"),
        "2": ("Hi Bob", "Double points today, Bob Ray", "https://club.example.com/offers")}
    assert {pk: (m.status, m.provider_id) for pk, m in messages.items()} == {
        ann.pk: ("sent", pushed["1"].location), bob.pk: ("sent", pushed["2"].location)}
    assert pushed["1"].payload["data"]["engage_message_id"] == str(messages[ann.pk].pk)


def test_a_subscription_the_push_service_calls_gone_deactivates_the_browsers_device(peer):
    peer.script.gone.add("1")
    gone = _browser_member(peer, 1)
    kept = _browser_member(peer, 2)

    mailing = _send_webpush_mailing(peer)

    outcome = {m.member_id: (m.status, m.error_code)
               for m in Message.objects.filter(mailing=mailing)}
    assert outcome == {gone.pk: ("failed", "subscription_gone"), kept.pk: ("sent", "")}
    assert dict(Device.objects.filter(member__in=[gone, kept])
                .values_list("member_id", "is_active")) == {gone.pk: False, kept.pk: True}
