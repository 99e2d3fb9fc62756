"""A push token the provider refuses for good (FCM's UNREGISTERED, or INVALID_ARGUMENT about
the registration token) fails its message with the code and deactivates the member's device;
the batches go to a Firebase Cloud Messaging server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.models import Mailing, Message, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from members.models import Device
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import DeviceFactory, consenting_member
from tests.peers.fcm import FcmPeer

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    # Any hour will do: quiet hours are tests/communications/test_compliance.py's.
    QuietHours.objects.filter(channel="push").delete()
    peer = FcmPeer().start()
    yield peer
    peer.stop()


def _member_with_phone(token: str):
    member = consenting_member(channel="push")
    DeviceFactory(member=member, token=token, last_seen_at=NOW)
    return member


def _send_push_mailing(peer: FcmPeer, *, body: str = "Double points today") -> Mailing:
    template = TemplateFactory(channel="push", subject="Hi", body=body)
    gateway = GatewayFactory(name="FCM", channel="push", provider="fcm", sender="",
                             settings=peer.gateway_settings())
    mailing = MailingFactory(template=template, gateway=gateway)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    while message_batch_dispatch(mailing_id=mailing.pk)["claimed"]:
        pass
    return mailing


def _outcome(mailing: Mailing, member) -> tuple[str, str]:
    message = Message.objects.get(mailing=mailing, member=member)
    return message.status, message.error_code


def _active(token: str) -> bool:
    return Device.objects.get(token=token).is_active


def test_an_unregistered_token_fails_its_message_with_the_code_and_deactivates_the_device(
        fcm_peer):
    # given
    fcm_peer.script.unregistered.add("uninstalled-app")
    member = _member_with_phone("uninstalled-app")

    # when
    mailing = _send_push_mailing(fcm_peer)

    # then
    assert _outcome(mailing, member) == ("failed", "UNREGISTERED")
    assert not _active("uninstalled-app")


def test_a_token_fcm_calls_invalid_fails_its_message_with_the_code_and_deactivates_the_device(
        fcm_peer):
    fcm_peer.script.invalid.add("garbled-token")
    member = _member_with_phone("garbled-token")

    mailing = _send_push_mailing(fcm_peer)

    assert _outcome(mailing, member) == ("failed", "INVALID_TOKEN")
    assert not _active("garbled-token")


def test_the_members_other_devices_and_the_delivered_ones_stay_active(fcm_peer):
    fcm_peer.script.unregistered.add("old-phone")
    member = _member_with_phone("old-phone")
    DeviceFactory(member=member, token="tablet", last_seen_at=NOW - timedelta(days=1))
    other = _member_with_phone("working-phone")

    mailing = _send_push_mailing(fcm_peer)

    assert _outcome(mailing, other) == ("sent", "")
    assert (_active("old-phone"), _active("tablet"), _active("working-phone")) == (
        False, True, True)


def test_a_payload_fcm_refuses_as_too_large_leaves_the_device_active(fcm_peer):
    member = _member_with_phone("healthy-phone")

    mailing = _send_push_mailing(fcm_peer, body="x" * 5000)

    assert _outcome(mailing, member) == ("failed", "INVALID_ARGUMENT")
    assert _active("healthy-phone")


def test_a_provider_outage_leaves_the_device_active(fcm_peer):
    fcm_peer.script.unavailable.add("phone-during-outage")
    _member_with_phone("phone-during-outage")

    _send_push_mailing(fcm_peer)

    assert _active("phone-during-outage")


def test_every_dead_token_of_a_batch_is_deactivated_in_one_update(fcm_peer):
    tokens = [f"gone-{n}" for n in range(4)]
    fcm_peer.script.unregistered.update(tokens[:2])
    fcm_peer.script.invalid.update(tokens[2:])
    for token in tokens:
        _member_with_phone(token)

    with CaptureQueriesContext(connection) as queries:
        _send_push_mailing(fcm_peer)

    device_updates = [q["sql"] for q in queries.captured_queries
                      if q["sql"].startswith(f'UPDATE "{Device._meta.db_table}"')]
    assert len(device_updates) == 1
    assert not Device.objects.filter(token__in=tokens, is_active=True).exists()
