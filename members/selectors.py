"""Queries that read member data."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from members.models import Consent, ConsentEvent, Member, Purpose


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


def consents_current(*, member: Member) -> dict[str, str]:
    """{channel: state} of the member's marketing consent per channel (absent = never given)."""
    return dict(
        Consent.objects.filter(member=member, purpose=Purpose.MARKETING, category=None)
        .values_list("channel", "state")
    )


def consent_history(*, member: Member) -> QuerySet[ConsentEvent]:
    return (ConsentEvent.objects.filter(member=member)
            .select_related("category", "actor").order_by("-recorded_at", "-id"))
