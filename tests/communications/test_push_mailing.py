"""Push mailings: the audience snapshot addresses each member's device, and the batches reach
a Firebase Cloud Messaging server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from communications.models import Mailing, Message, QuietHours
from communications.services import (
    mailing_prepare,
    mailing_schedulable_errors,
    mailing_schedule,
    message_batch_dispatch,
)
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import ConsentFactory, DeviceFactory, consenting_member
from tests.peers.fcm import FcmPeer

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    peer = FcmPeer().start()
    yield peer
    peer.stop()


def _push_mailing(*, gateway_settings: dict | None = None, **fields) -> Mailing:
    template = TemplateFactory(channel="push", subject="Hi {{ member.first_name }}",
                               body="Double points today, {{ member.full_name }}")
    gateway = GatewayFactory(name="FCM", channel="push", provider="fcm", sender="",
                             settings=gateway_settings or {"project_id": "engage-test"})
    return MailingFactory(template=template, gateway=gateway, **fields)


def _push_member(*, token: str | None = None, **fields):
    member = consenting_member(channel="push", **fields)
    if token is not None:
        DeviceFactory(member=member, token=token, last_seen_at=NOW)
    return member


def _prepare(mailing: Mailing) -> None:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)


def _messages(mailing: Mailing) -> dict[int, tuple[str, str, str]]:
    return {m.member_id: (m.status, m.skip_reason, m.address)
            for m in Message.objects.filter(mailing=mailing)}


# --- scheduling -----------------------------------------------------------------------------

def test_a_push_mailing_through_an_fcm_gateway_can_be_scheduled():
    mailing = _push_mailing()

    assert mailing_schedulable_errors(mailing=mailing) == {}


def test_a_gateway_whose_provider_cannot_send_the_channel_is_refused():
    # A row saved without its clean(): an SMTP provider on a push gateway.
    mailing = MailingFactory(template=TemplateFactory(channel="push", subject=""),
                             gateway=GatewayFactory(channel="push", provider="smtp"))

    errors = mailing_schedulable_errors(mailing=mailing)

    assert errors == {"gateway": "the gateway's provider 'smtp' cannot send push"}


# --- the snapshot ---------------------------------------------------------------------------

def test_push_goes_to_the_most_recently_seen_active_device():
    member = consenting_member(channel="push")
    DeviceFactory(member=member, token="old-phone", last_seen_at=NOW - timedelta(days=30))
    DeviceFactory(member=member, token="new-phone", last_seen_at=NOW - timedelta(hours=1))
    DeviceFactory(member=member, token="never-seen", last_seen_at=None)
    DeviceFactory(member=member, token="uninstalled", last_seen_at=NOW, is_active=False)
    mailing = _push_mailing()

    _prepare(mailing)

    assert _messages(mailing)[member.pk] == ("queued", "", "new-phone")


def test_member_whose_devices_are_all_inactive_is_skipped_as_no_address():
    member = consenting_member(channel="push")
    DeviceFactory(member=member, token="uninstalled", is_active=False)
    mailing = _push_mailing()

    _prepare(mailing)

    assert _messages(mailing)[member.pk] == ("skipped", "no_address", "")


def test_an_fcm_mailing_does_not_address_an_apple_device():
    member = consenting_member(channel="push")
    DeviceFactory(member=member, platform="apns", token="a" * 64, last_seen_at=NOW)
    mailing = _push_mailing()

    _prepare(mailing)

    assert _messages(mailing)[member.pk] == ("skipped", "no_address", "")


def test_member_with_a_device_but_only_email_consent_is_skipped_as_opted_out():
    member = consenting_member(channel="email")
    DeviceFactory(member=member, token="phone")
    mailing = _push_mailing()

    _prepare(mailing)

    assert _messages(mailing)[member.pk] == ("skipped", "opted_out", "phone")


def test_member_who_withdrew_push_consent_is_skipped_as_opted_out():
    member = _push_member(token="phone")
    ConsentFactory._meta.model.objects.filter(member=member).update(state="withdrawn")
    mailing = _push_mailing()

    _prepare(mailing)

    assert _messages(mailing)[member.pk][:2] == ("skipped", "opted_out")


def test_members_sharing_a_push_token_get_one_push_the_lowest_member_id():
    # Device tokens are unique per platform; the development sink serves every platform.
    first, second = _push_member(), _push_member()
    DeviceFactory(member=first, platform="fcm", token="shared-tablet")
    DeviceFactory(member=second, platform="hms", token="shared-tablet")
    mailing = _push_mailing()
    type(mailing.gateway).objects.filter(pk=mailing.gateway_id).update(provider="file_sink")

    _prepare(mailing)

    assert _messages(mailing) == {first.pk: ("queued", "", "shared-tablet"),
                                  second.pk: ("skipped", "duplicate_address", "shared-tablet")}


# --- sending --------------------------------------------------------------------------------

def test_push_batches_reach_fcm_with_each_members_token_and_rendered_text(fcm_peer):
    # given: any hour will do (quiet hours are tests/communications/test_compliance.py's)
    QuietHours.objects.filter(channel="push").delete()
    ann = _push_member(token="ann-phone", first_name="Ann", last_name="Lee")
    bob = _push_member(token="bob-phone", first_name="Bob", last_name="Ray")
    DeviceFactory(member=bob, token="bob-old-phone", last_seen_at=NOW - timedelta(days=90))
    cid = _push_member(first_name="Cid")  # no device
    mailing = _push_mailing(gateway_settings=fcm_peer.gateway_settings())
    _prepare(mailing)

    # when
    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=1)["claimed"]:
        pass

    # then: one push per member with a device, to that device, personalized
    assert sorted((p.token, p.title, p.body) for p in fcm_peer.received) == [
        ("ann-phone", "Hi Ann", "Double points today, Ann Lee"),
        ("bob-phone", "Hi Bob", "Double points today, Bob Ray"),
    ]
    messages = {m.member_id: m for m in Message.objects.filter(mailing=mailing)}
    names = {p.token: p.name for p in fcm_peer.received}
    assert {pk: (m.status, m.provider_id) for pk, m in messages.items()} == {
        ann.pk: ("sent", names["ann-phone"]),
        bob.pk: ("sent", names["bob-phone"]),
        cid.pk: ("skipped", ""),
    }
    assert {p.data["engage_message_id"] for p in fcm_peer.received} == {
        str(messages[ann.pk].pk), str(messages[bob.pk].pk)}
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.COMPLETED


def test_a_push_mailing_sends_the_templates_image_deep_link_and_data(fcm_peer):
    QuietHours.objects.filter(channel="push").delete()
    _push_member(token="ann-phone", first_name="Ann")
    mailing = _push_mailing(gateway_settings=fcm_peer.gateway_settings())
    mailing.template.image_url = "https://cdn.example.com/autumn.jpg"
    mailing.template.link_url = "myapp://offers/7"
    mailing.template.push_data = {"offer_id": "7"}
    mailing.template.save()
    _prepare(mailing)

    message_batch_dispatch(mailing_id=mailing.pk)

    [pushed] = fcm_peer.received
    assert pushed.image == "https://cdn.example.com/autumn.jpg"
    assert (pushed.data["link"], pushed.data["offer_id"]) == ("myapp://offers/7", "7")
