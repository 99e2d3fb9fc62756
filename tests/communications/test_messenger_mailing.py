"""Viber and social-network mailings: the snapshot addresses each member's messenger account."""
from __future__ import annotations

import pytest

from communications.gateways import GatewayError, SendResult
from communications.models import Mailing, Message
from communications.services import mailing_prepare, mailing_schedule
from communications.services.statuses import messenger_accounts_deactivate
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import ConsentFactory, MemberFactory, MessengerAccountFactory

pytestmark = pytest.mark.django_db


def _mailing(channel: str, provider: str = "file_sink") -> Mailing:
    return MailingFactory(template=TemplateFactory(channel=channel, subject="", body="Hi"),
                          gateway=GatewayFactory(channel=channel, provider=provider))


def _member(channel: str, *accounts: tuple[str, str, bool]):
    member = MemberFactory()
    ConsentFactory(member=member, channel=channel)
    for network, account_id, active in accounts:
        MessengerAccountFactory(member=member, network=network, account_id=account_id,
                                is_active=active)
    return member


def _addresses(mailing: Mailing) -> dict[int, tuple[str, str, str]]:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    return {m.member_id: (m.status, m.skip_reason, m.address)
            for m in Message.objects.filter(mailing=mailing)}


def test_a_viber_message_goes_to_the_members_viber_account():
    member = _member("viber", ("viber", "viber-id-1", True))

    assert _addresses(_mailing("viber"))[member.pk] == ("queued", "", "viber-id-1")


def test_a_member_without_an_active_viber_account_is_skipped_as_no_address():
    inactive = _member("viber", ("viber", "viber-id-2", False))
    telegram_only = _member("viber", ("telegram", "tg-1", True))

    messages = _addresses(_mailing("viber"))

    assert messages[inactive.pk][:2] == ("skipped", "no_address")
    assert messages[telegram_only.pk][:2] == ("skipped", "no_address")


def test_a_member_with_two_accounts_gets_one_message_to_the_newest():
    member = _member("viber", ("viber", "old-id", True), ("viber", "new-id", True))

    assert _addresses(_mailing("viber")) == {member.pk: ("queued", "", "new-id")}


def test_a_social_mailing_reaches_any_social_network_account():
    member = _member("social", ("vk", "vk-7", True))

    assert _addresses(_mailing("social"))[member.pk] == ("queued", "", "vk-7")


def test_a_viber_member_without_consent_is_skipped_as_opted_out():
    member = MemberFactory()
    MessengerAccountFactory(member=member, network="viber", account_id="viber-id-3")

    assert _addresses(_mailing("viber"))[member.pk][:2] == ("skipped", "opted_out")


def test_an_account_the_provider_says_is_gone_is_deactivated_and_others_stay():
    gone = MessengerAccountFactory(network="viber", account_id="gone-1")
    kept = MessengerAccountFactory(network="viber", account_id="kept-1")
    mailing = _mailing("viber")
    refused, failed_otherwise = (
        MessageFactory(mailing=mailing, member=account.member, channel="viber",
                       address=account.account_id) for account in (gone, kept))

    deactivated = messenger_accounts_deactivate(results=[
        SendResult(refused.pk, error=GatewayError("not on Viber", code="receiverNotRegistered",
                                                  permanent=True)),
        SendResult(failed_otherwise.pk, error=GatewayError("text too long", code="3",
                                                           permanent=True)),
    ])

    gone.refresh_from_db()
    kept.refresh_from_db()
    assert (deactivated, gone.is_active, kept.is_active) == (1, False, True)
