from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from communications.models import Mailing, Message


def mailing_status_counts(*, mailing: Mailing) -> dict[str, Any]:
    """Messages per status (and skip reason) of one mailing, in one grouped query."""
    counts = {status: 0 for status in Message.Status.values}
    skipped: dict[str, int] = {}
    rows = (
        Message.objects.filter(mailing=mailing).order_by()
        .values("status", "skip_reason").annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["status"]] += row["n"]
        if row["status"] == Message.Status.SKIPPED:
            skipped[row["skip_reason"]] = skipped.get(row["skip_reason"], 0) + row["n"]
    return {"total": sum(counts.values()), **counts, "skipped_by_reason": skipped}


def mailings_with_counts() -> QuerySet[Mailing]:
    return Mailing.objects.select_related("campaign", "target_group", "template", "gateway")
