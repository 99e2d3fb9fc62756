"""Queries that read member data."""

from __future__ import annotations

from django.db.models import QuerySet

from members.models import Consent, ConsentEvent, Member, Purpose


def consents_current(*, member: Member) -> dict[str, str]:
    """{channel: state} of the member's marketing consent per channel (absent = never given)."""
    return dict(
        Consent.objects.filter(member=member, purpose=Purpose.MARKETING, category=None)
        .values_list("channel", "state")
    )


def consent_history(*, member: Member) -> QuerySet[ConsentEvent]:
    return (ConsentEvent.objects.filter(member=member)
            .select_related("category", "actor").order_by("-recorded_at", "-id"))
