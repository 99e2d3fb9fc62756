"""Target-group conditions on engagement: received, opened or clicked a mailing or campaign.

Registered into the rule catalog of `campaigns` when this app is ready, since `campaigns`
sits below `communications` and must not import it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q

from campaigns.models import Campaign
from campaigns.rules import fields_register
from campaigns.rules.spec import Condition, FieldSpec, RuleValueError
from communications.models import Mailing, Message

RECEIVED = (Message.Status.SENT, Message.Status.DELIVERED)
# What each field requires of the message, and which moment a window is measured on.
_ENGAGEMENT = {
    "received": (Q(status__in=RECEIVED), "sent_at"),
    "opened": (Q(opened_at__isnull=False), "opened_at"),
    "clicked": (Q(clicked_at__isnull=False), "clicked_at"),
}


def _engaged(key: str):  # noqa: ANN202 - a FieldSpec.compile
    required, moment = _ENGAGEMENT[key]

    def compile(cond: Condition, compiler: Any) -> Q:
        messages = Message.objects.filter(required, member=OuterRef("pk"))
        if cond.op == "mailing":
            messages = messages.filter(mailing_id=cond.value)
        else:
            messages = messages.filter(mailing__campaign_id=cond.value)
        if cond.days is not None:
            messages = messages.filter(**{f"{moment}__gte": cond.since()})
        return Q(Exists(messages))
    return compile


def _parse_reference(op: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise RuleValueError(f"must be the id of a {op}")
    model = Mailing if op == "mailing" else Campaign
    if not model.objects.filter(pk=raw).exists():
        raise RuleValueError(f"no {op} with id {raw}")
    return raw


FIELDS = [
    FieldSpec(key=key, label=key.capitalize(), family="Engagement", kind="reference",
              ops=("mailing", "campaign"), compile=_engaged(key), parse=_parse_reference,
              windowed=True, help=f"{key.capitalize()} the given mailing, or any mailing of "
                                  "the given campaign; a window counts from when it happened.")
    for key in _ENGAGEMENT
]

fields_register(FIELDS)
