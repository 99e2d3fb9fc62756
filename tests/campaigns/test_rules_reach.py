"""Reachability: active, a whole-channel marketing grant, and an address that may be used."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.rule_strategies import PROPERTY
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    CHANNELS,
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.members.factories import (
    ConsentFactory,
    DeviceFactory,
    MemberFactory,
    MessengerAccountFactory,
    SubscriptionCategoryFactory,
    SuppressionFactory,
)

pytestmark = pytest.mark.django_db


def _reachable(channel: str) -> dict:
    return {"field": "reachable", "op": "reachable", "value": channel}


@pytest.mark.parametrize("channel", CHANNELS)
def test_reachable_selects_the_members_the_document_says(segment, channel):
    assert_like_reference(_reachable(channel), segment)


@pytest.mark.parametrize("channel", CHANNELS)
def test_not_reachable_selects_every_other_member(segment, channel):
    assert_like_reference({"not": _reachable(channel)}, segment)


@PROPERTY
@given(channels=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3))
def test_email_reachability_needs_a_confirmed_address_under_double_opt_in(segment, settings,
                                                                           channels):
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = True

    assert_like_reference({"or": [_reachable(channel) for channel in channels]}, segment)


def test_a_category_only_grant_does_not_make_a_member_reachable(segment):
    member = MemberFactory()
    ConsentFactory(member=member, channel="email", category=SubscriptionCategoryFactory())

    assert member.pk not in ids(_reachable("email"))


def test_a_suppressed_address_is_unreachable(segment):
    member = MemberFactory(email="bounced.once@example.com")
    ConsentFactory(member=member, channel="email")
    SuppressionFactory(channel="email", address="bounced.once@example.com")

    assert member.pk not in ids(_reachable("email"))


def test_an_address_suppressed_on_another_channel_stays_reachable(segment):
    member = MemberFactory(phone="+37120000001")
    ConsentFactory(member=member, channel="sms")
    SuppressionFactory(channel="email", address="+37120000001")

    assert member.pk in ids(_reachable("sms"))


def test_a_blocked_member_is_reachable_nowhere(segment):
    member = MemberFactory(status="blocked")
    for channel in CHANNELS:
        ConsentFactory(member=member, channel=channel)
    DeviceFactory(member=member)
    MessengerAccountFactory(member=member, network="viber")
    MessengerAccountFactory(member=member, network="telegram")

    assert not any(member.pk in ids(_reachable(channel)) for channel in CHANNELS)


def test_push_needs_an_active_device(segment):
    active, inactive = MemberFactory(), MemberFactory()
    for member in (active, inactive):
        ConsentFactory(member=member, channel="push")
    DeviceFactory(member=active)
    DeviceFactory(member=inactive, is_active=False)

    assert {active.pk, inactive.pk} & ids(_reachable("push")) == {active.pk}


def test_social_is_any_active_vk_telegram_or_whatsapp_account(segment):
    members = {network: MemberFactory() for network in ("vk", "telegram", "whatsapp", "viber")}
    for network, member in members.items():
        ConsentFactory(member=member, channel="social")
        MessengerAccountFactory(member=member, network=network)

    selected = ids(_reachable("social"))

    assert {member.pk for member in members.values()} & selected == {
        members[network].pk for network in ("vk", "telegram", "whatsapp")}
