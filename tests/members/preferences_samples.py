"""A member as the preferences tests start from: reachable by email and SMS, allowing both."""

from __future__ import annotations

from members.models import Member
from tests.members.factories import ConsentFactory, MemberFactory


def member_allowing_email_and_sms(**fields) -> Member:
    member = MemberFactory(**{"email": "ann@example.com", "phone": "+4915123456789",
                              "language": "en", "timezone": "Europe/Berlin",
                              "first_name": "Ann", **fields})
    for channel in ("email", "sms"):
        ConsentFactory(member=member, channel=channel)
    return member
