"""Push mailings through each push provider besides Firebase (tests/communications/
test_push_mailing.py), end to end: the snapshot addresses the member's device of the provider's
platform, the batches reach the provider's peer on loopback, and a token the provider calls dead
deactivates the device."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone

from communications.gateways.apns import apns_id
from communications.models import Message, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from members.models import Device
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import DeviceFactory, consenting_member
from tests.peers.apns import ApnsPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def apns_peer() -> Iterator[ApnsPeer]:
    # Any hour will do: quiet hours are tests/communications/test_compliance.py's.
    QuietHours.objects.filter(channel="push").delete()
    peer = ApnsPeer().start()
    yield peer
    peer.stop()


def test_a_push_mailing_reaches_apple_devices_through_apns_and_an_unregistered_one_is_deactivated(
        apns_peer):
    # given: Ann's iPhone has the app, Bob's had it
    ann, bob = consenting_member(channel="push"), consenting_member(channel="push")
    ann_phone, bob_phone = "a1" * 32, "b2" * 32
    DeviceFactory(member=ann, platform=Device.Platform.APNS, token=ann_phone,
                  last_seen_at=timezone.now())
    DeviceFactory(member=bob, platform=Device.Platform.APNS, token=bob_phone,
                  last_seen_at=timezone.now())
    apns_peer.script.unregistered.add(bob_phone)
    gateway = GatewayFactory(name="APNs", channel="push", provider="apns", sender="",
                             settings=apns_peer.gateway_settings())
    mailing = MailingFactory(gateway=gateway, template=TemplateFactory(
        channel="push", subject="Hi {{ member.first_name }}", body="Double points today"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    # when
    while message_batch_dispatch(mailing_id=mailing.pk)["claimed"]:
        pass

    # then: Ann's push went out under its apns-id, Bob's failed and his device is off
    [pushed] = apns_peer.received
    assert (pushed.token, pushed.aps["alert"]["title"]) == (ann_phone, f"Hi {ann.first_name}")
    messages = {m.member_id: m for m in Message.objects.filter(mailing=mailing)}
    assert (messages[ann.pk].status, messages[ann.pk].provider_id) == (
        "sent", apns_id(messages[ann.pk].pk))
    assert (messages[bob.pk].status, messages[bob.pk].error_code) == ("failed", "Unregistered")
    assert dict(Device.objects.filter(member__in=[ann, bob]).values_list("token", "is_active")) == {
        ann_phone: True, bob_phone: False}
