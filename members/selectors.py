"""Queries that read member data."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Length

from members.models import (
    Channel,
    Consent,
    ConsentEvent,
    Device,
    Member,
    MessengerAccount,
    Purpose,
    Suppression,
)

# Where a channel's address lives on the member, for the channels that address by a column.
ADDRESS_FIELDS = {Channel.EMAIL: "email", Channel.SMS: "phone"}
SOCIAL_NETWORKS = (MessengerAccount.Network.VK, MessengerAccount.Network.TELEGRAM,
                   MessengerAccount.Network.WHATSAPP)
# A message row keeps the address it went to in 1024 characters (a web-push subscription is
# about 330, FCM tokens about 160): a longer token could not be frozen into the audience, so
# it is no address at all.
PUSH_TOKEN_MAX_LENGTH = 1024


def push_devices(*, member: OuterRef | None = None,
                 platforms: Iterable[str] | None = None) -> QuerySet[Device]:
    """Devices a push can be addressed to: active, with a token (of `platforms`, if given).

    `member` narrows them to one member, usually `OuterRef("pk")` of a member query.
    """
    devices = (Device.objects.filter(is_active=True).exclude(token="")
               .alias(_token_length=Length("token"))
               .filter(_token_length__lte=PUSH_TOKEN_MAX_LENGTH))
    if member is not None:
        devices = devices.filter(member=member)
    if platforms is not None:
        devices = devices.filter(platform__in=list(platforms))
    return devices


def push_device_chosen(*, platforms: Iterable[str] | None = None) -> Subquery:
    """The id of the device a push to the member of the outer query goes to: the most recently
    seen of their `push_devices` (never seen counts as oldest); NULL if they have none."""
    return Subquery(
        push_devices(member=OuterRef("pk"), platforms=platforms)
        .order_by(F("last_seen_at").desc(nulls_last=True), "-pk")
        .values("pk")[:1]
    )


def messenger_account_chosen(*, networks: Iterable[str]) -> Subquery:
    """The id of the messenger account a Viber or social message to the member of the outer
    query goes to: their newest active account on one of `networks`; NULL if they have none."""
    return Subquery(
        MessengerAccount.objects.filter(member=OuterRef("pk"), network__in=list(networks),
                                        is_active=True).exclude(account_id="")
        .order_by("-created_at", "-pk").values("pk")[:1]
    )


def marketing_consent_granted(*, channel: str) -> Exists:
    """EXISTS a granted marketing consent on the whole channel for the member of the outer
    query: what "may be marketed to on this channel" means in segments and snapshots.

    Category rows do not count (a member may grant offers yet not the channel); the condition
    matches the partial index `consent_granted_idx`.
    """
    return Exists(Consent.objects.filter(
        member=OuterRef("pk"), channel=channel,
        purpose=Purpose.MARKETING, category=None, state=Consent.State.GRANTED,
    ))


def member_reachable(*, channel: str) -> Q:
    """Members who may be sent marketing on `channel` now: active, consent on the channel, and
    an address for it that is not suppressed (for email under double opt-in, a confirmed one).

    The audience preview counts with it, and target groups offer it as a condition.
    """
    q = Q(status=Member.Status.ACTIVE) & Q(marketing_consent_granted(channel=channel))
    if channel in ADDRESS_FIELDS:
        field = ADDRESS_FIELDS[channel]
        q &= ~Q(**{field: ""}) & ~Exists(
            Suppression.objects.filter(channel=channel, address=OuterRef(field)))
        if channel == Channel.EMAIL and settings.ENGAGE_EMAIL_DOUBLE_OPT_IN:
            q &= Q(email_verified_at__isnull=False)
    elif channel == Channel.PUSH:
        q &= Exists(push_devices(member=OuterRef("pk")))
    elif channel == Channel.VIBER:
        q &= Exists(MessengerAccount.objects.filter(
            member=OuterRef("pk"), network=MessengerAccount.Network.VIBER, is_active=True))
    else:
        q &= Exists(MessengerAccount.objects.filter(
            member=OuterRef("pk"), network__in=SOCIAL_NETWORKS, is_active=True))
    return q


def consents_current(*, member: Member) -> dict[str, str]:
    """{channel: state} of the member's marketing consent per channel (absent = never given)."""
    return dict(
        Consent.objects.filter(member=member, purpose=Purpose.MARKETING, category=None)
        .values_list("channel", "state")
    )


def consent_history(*, member: Member) -> QuerySet[ConsentEvent]:
    return (ConsentEvent.objects.filter(member=member)
            .select_related("category", "actor").order_by("-recorded_at", "-id"))
