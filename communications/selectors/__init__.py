from __future__ import annotations

from typing import Any

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from communications.models import Mailing, Message

Status = Message.Status
SkipReason = Message.SkipReason


def mailing_status_counts(*, mailing: Mailing) -> dict[str, Any]:
    """Messages per status (and skip reason) of one mailing, in one grouped query; test sends
    are not counted."""
    counts = {status: 0 for status in Status.values}
    skipped = {reason: 0 for reason in SkipReason.values}
    rows = (
        Message.objects.filter(mailing=mailing, is_test=False).order_by()
        .values("status", "skip_reason").annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["status"]] += row["n"]
        if row["status"] == Status.SKIPPED:
            skipped[row["skip_reason"]] = skipped.get(row["skip_reason"], 0) + row["n"]
    return {"total": sum(counts.values()), **counts, "skipped_by_reason": skipped}


def _message_count(**filters: Any) -> Coalesce:
    counted = (
        Message.objects.filter(mailing=OuterRef("pk"), is_test=False, **filters).order_by()
        .values("mailing").annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def mailings_with_counts() -> QuerySet[Mailing]:
    """Mailings annotated `count_<status>` and `skipped_<reason>`.

    Correlated subqueries run only for the rows of the page being read, each on the
    (mailing, status) index; a join grouped over all messages would aggregate the whole table.
    """
    return Mailing.objects.select_related(
        "campaign", "target_group", "template", "gateway"
    ).prefetch_related("cascade_steps__template").annotate(
        **{f"count_{status}": _message_count(status=status) for status in Status.values},
        **{f"skipped_{reason}": _message_count(status=Status.SKIPPED, skip_reason=reason)
           for reason in SkipReason.values},
    )


def mailing_counts_from_annotations(mailing: Mailing) -> dict[str, Any]:
    """The shape of `mailing_status_counts` from a row of `mailings_with_counts()`."""
    counts = {status: getattr(mailing, f"count_{status}") for status in Status.values}
    skipped = {reason: getattr(mailing, f"skipped_{reason}") for reason in SkipReason.values}
    return {"total": sum(counts.values()), **counts, "skipped_by_reason": skipped}
