"""The messages a member received, for their data export, and their anonymization on erasure.

Registered in `members.hooks` by `CommunicationsConfig.ready()`: `members` never imports us.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, Value
from django.db.models.functions import Coalesce

from communications.models import Message
from members import hooks
from members.models import Member

TRANSACTIONAL = "transactional"


def member_messages_export(member: Member) -> dict[str, Any]:
    messages = (
        Message.objects.filter(member=member).order_by("created_at", "id")
        .values("channel", "address", "status", "skip_reason", "sent_at", "created_at", "content",
                mailing_name=Coalesce(F("mailing__name"), Value(TRANSACTIONAL)))
    )
    return {"messages": list(messages)}


def member_messages_erase(member: Member) -> dict[str, int]:
    """Blank what names the person in every message of the member, transactional ones too.

    Status, channel, timestamps and cost stay, so mailing funnels and spend still add up; the
    rendered content of a transactional message (it may quote the address or a name) goes.
    """
    anonymized = Message.objects.filter(member_id=member.pk).update(
        address="", error="", error_code="", content=None
    )
    return {"messages_anonymized": anonymized}


hooks.MEMBER_EXPORT.append(member_messages_export)
hooks.MEMBER_ERASE.append(member_messages_erase)
