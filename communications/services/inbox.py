"""Read receipts from the member: the app (or the account's inbox) says a push was read.

A read is the message's `opened` status, applied through the same forward-only machine as a
provider's receipt (`message_statuses_apply`, source `member`): it is made and recorded once,
`opened_at` keeps the first read, and a message already further along (clicked, complained)
or read before is left as it is. Only the member's own received app messages can be marked:
any other id is not found, whoever it belongs to.
"""

from __future__ import annotations

from django.utils import timezone

from communications.models import Message, MessageStatusChange
from communications.selectors.inbox import member_inbox
from communications.services.statuses import StatusChange, message_statuses_apply
from members.models import Channel


class MessageReadRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def member_message_read(*, member_id: int, message_id: int) -> Message:
    """Mark one of the member's app messages read; returns it as it is now.

    Raises Message.DoesNotExist for an id outside the member's inbox, MessageReadRefused
    (`not_an_app_message`) for a message of a channel that keeps no read state.
    """
    message = (member_inbox(member_id=member_id).filter(pk=message_id).select_related(None)
               .only("id", "channel", "status", "opened_at").get())
    if message.channel != Channel.PUSH:
        raise MessageReadRefused(
            "not_an_app_message",
            f"only app messages are marked read; this one went by {message.channel}")
    message_statuses_apply(
        changes=[StatusChange(message.pk, Message.Status.OPENED, timezone.now())],
        source=MessageStatusChange.Source.MEMBER)
    message.refresh_from_db(fields=["status", "opened_at"])
    return message
