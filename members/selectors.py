"""Queries that read member data."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

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
        q &= Exists(Device.objects.filter(member=OuterRef("pk"), is_active=True))
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
