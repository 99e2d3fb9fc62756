"""What the marketer screens share: which mailing states still allow edits, and how a
service's ValidationError reads as one line."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from communications.models import Mailing, Message

State = Mailing.State
Status = Message.Status
# From `sending` on the audience is frozen into messages, so the mailing no longer changes.
EDITABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING)
CANCELLABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING, State.PREPARING,
                      State.SENDING, State.PAUSED)
BUSY_STATES = (State.SCHEDULED, State.PREPARING, State.SENDING)


def validation_error_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(texts)}" for field, texts in error.message_dict.items()
        )
    return " ".join(error.messages)


def busy_states(mailings: QuerySet[Mailing]) -> set[str]:
    return set(
        mailings.filter(state__in=BUSY_STATES).order_by().values_list("state", flat=True)
        .distinct()
    )


