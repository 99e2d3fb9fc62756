"""A second person's approval of a large mailing before it is scheduled.

With ENGAGE_APPROVAL_THRESHOLD set, a mailing whose audience holds more members than that may
be scheduled or started only once someone other than the person scheduling it has approved
it, and only for the audience and content it had when approved: the approval records the
mailing's version (`mailing_version`: its audience, its templates and gateways, each with its
last change), and any change to them afterwards makes it void. The audience is counted as the
cost estimate counts it (communications.selectors.costs). Who may approve is a permission,
`communications.approve_mailing` (config.roles gives it to marketers, so two marketers make
the pair). Schedules made by the system (a recurring mailing's runs, the benchmarks) carry no
person and are not asked.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from communications.models import Mailing
from communications.selectors.costs import mailing_audience_size
from communications.services.cascade import mailing_steps

APPROVABLE_STATES = (Mailing.State.DRAFT, Mailing.State.SCHEDULED, Mailing.State.RECURRING)


def mailing_version(*, mailing: Mailing) -> str:
    """A digest of what decides who gets which message: the audience and every channel's
    template and gateway, with their last changes."""
    parts: list[Any] = [mailing.member_id, mailing.category_id]
    if mailing.target_group_id is not None:
        parts += ["group", mailing.target_group_id, mailing.target_group.updated_at]
    if mailing.static_list_id is not None:
        parts += ["list", mailing.static_list_id, mailing.static_list.entries.count()]
    for step in mailing_steps(mailing=mailing):
        parts += [step.position, step.template.pk, step.template.updated_at, step.gateway.pk]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def mailing_approval_needed(*, mailing: Mailing) -> int | None:
    """The audience's size when it is over the threshold (so approval is needed), else None."""
    threshold = settings.ENGAGE_APPROVAL_THRESHOLD
    if not threshold:
        return None
    size = mailing_audience_size(mailing=mailing)
    return size if size > threshold else None


def mailing_approval_errors(*, mailing: Mailing, by: Any) -> dict[str, str]:
    """Why `by` may not schedule the mailing yet for want of approval ({} when they may)."""
    size = mailing_approval_needed(mailing=mailing)
    if size is None:
        return {}
    needs = (f"it reaches {size:,} members, more than {settings.ENGAGE_APPROVAL_THRESHOLD:,}: "
             f"a second person must approve it")
    if mailing.approved_by_id is None:
        return {"approval": needs}
    if mailing.approved_version != mailing_version(mailing=mailing):
        return {"approval": f"it changed since it was approved; {needs} again"}
    if mailing.approved_by_id == getattr(by, "pk", None):
        return {"approval": f"you approved it yourself; {needs}"}
    return {}


@transaction.atomic
def mailing_approve(*, mailing: Mailing, by: Any) -> Mailing:
    """Record `by`'s approval of the mailing as it is now. The one who built it cannot."""
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in APPROVABLE_STATES:
        raise ValidationError({"state": f"a {mailing.state} mailing cannot be approved"})
    if mailing.created_by_id is not None and mailing.created_by_id == by.pk:
        raise ValidationError({"approval": "a second person must approve a mailing: you "
                                           "built this one"})
    mailing.approved_by, mailing.approved_at = by, timezone.now()
    mailing.approved_version = mailing_version(mailing=mailing)
    mailing.save(update_fields=["approved_by", "approved_at", "approved_version"])
    return mailing
