"""What the marketer screens share: which mailing states still allow edits, how a service's
ValidationError reads as one line, and a cost estimate as the page shows it."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.template.loader import render_to_string

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




def cost_estimate_html(estimate: dict[str, Any]) -> str:
    """A mailing's cost estimate (communications.selectors.costs) as its admin block, money as
    written: 0.15, not 0.15000."""
    for channel in estimate["channels"]:
        for key in ("price_per_message", "cost"):
            if channel[key] is not None:
                channel[key] = f"{channel[key].normalize():f}"
    return render_to_string("admin/communications/mailing/estimate.html", {"estimate": estimate})
