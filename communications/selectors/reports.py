"""The mailing report: who the audience was, how far its messages got, how fast they went, what
they cost and which errors the providers gave.

Three grouped queries whatever the audience size: one aggregate over the mailing's messages
(statuses, skip reasons, the funnel), one grouped by time bucket (throughput) and one grouped
by gateway and provider code (cost and errors). Test sends count nowhere.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, DateTimeField, F, Func, Max, Q, Sum, Value
from django.utils import timezone

from communications.models import Mailing, Message

Status = Message.Status
SkipReason = Message.SkipReason

# How the skipped part of the audience is told to the marketer, from the skip reasons.
ADDRESS_ISSUES = (SkipReason.NO_ADDRESS, SkipReason.SUPPRESSED, SkipReason.DUPLICATE_ADDRESS,
                  SkipReason.UNCONFIRMED)
AUDIENCE_GROUPS: dict[str, tuple[str, ...]] = {
    "address_issue": ADDRESS_ISSUES,
    "opted_out": (SkipReason.OPTED_OUT,),
    "not_subscribed": (SkipReason.NOT_SUBSCRIBED,),
    "capped": (SkipReason.FREQUENCY_CAP,),
    "inactive": (SkipReason.MEMBER_INACTIVE,),
    "quiet_hours_expired": (SkipReason.QUIET_HOURS_EXPIRED,),
}
AUDIENCE_LABELS = {
    "reachable": "Reachable",
    "address_issue": "Address issue",
    "opted_out": "Opted out of the channel",
    "not_subscribed": "Not subscribed to the category",
    "capped": "Capped (frequency cap)",
    "inactive": "Inactive members",
    "quiet_hours_expired": "Held past the lifetime (quiet hours)",
}
# Still to go out: not yet handed to the provider.
WAITING = (Status.CREATED, Status.QUEUED, Status.SENDING)
# Ended without reaching the member, or in doubt.
NOT_DELIVERED = (Status.FAILED, Status.REJECTED, Status.UNDELIVERED, Status.BOUNCED,
                 Status.COMPLAINED, Status.EXPIRED, Status.CANCELLED, Status.UNKNOWN)
# The funnel is cumulative: a clicked message was also opened, delivered and sent. Providers
# report out of order (a click without its open, no delivery report at all), so a stage counts
# a message whose timestamp or status says it got there, or further.
FUNNEL_STAGES: dict[str, Q] = {
    "sent": Q(sent_at__isnull=False) | Q(status__in=(
        Status.SENT, Status.DELIVERED, Status.OPENED, Status.CLICKED, Status.UNDELIVERED,
        Status.BOUNCED, Status.COMPLAINED)),
    "delivered": (Q(delivered_at__isnull=False) | Q(opened_at__isnull=False)
                  | Q(clicked_at__isnull=False)
                  | Q(status__in=(Status.DELIVERED, Status.OPENED, Status.CLICKED))),
    "opened": (Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)
               | Q(status__in=(Status.OPENED, Status.CLICKED))),
    "clicked": Q(clicked_at__isnull=False) | Q(status=Status.CLICKED),
}
FUNNEL_LABELS = {"queued": "Waiting to be sent", "sent": "Sent", "delivered": "Delivered",
                 "opened": "Opened / read", "clicked": "Clicked"}
# Throughput buckets: one minute, widened for a long mailing so a chart has at most this many.
MAX_BUCKETS = 120
BUCKET_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)


@dataclass
class ThroughputBucket:
    start: datetime
    sent: int
    per_minute: float


@dataclass
class GatewayCost:
    gateway_id: int | None
    gateway: str
    messages: int
    cost: Decimal


@dataclass
class ErrorGroup:
    gateway_id: int | None
    gateway: str
    code: str
    count: int
    example: str


@dataclass
class MailingReport:
    mailing_id: int
    state: str
    channel: str | None
    generated_at: datetime
    # True once the audience is frozen into messages; before, every figure is zero.
    frozen: bool
    live: bool  # preparing or sending: the figures are still moving
    total: int
    audience: dict[str, int]
    address_issues: dict[str, int]
    funnel: dict[str, int]
    statuses: dict[str, int]
    not_delivered: dict[str, int]
    skipped_by_reason: dict[str, int]
    bucket_minutes: int
    throughput: list[ThroughputBucket] = field(default_factory=list)
    cost_total: Decimal = Decimal(0)
    cost_by_gateway: list[GatewayCost] = field(default_factory=list)
    errors: list[ErrorGroup] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mailing_report(*, mailing: Mailing, now: datetime | None = None) -> MailingReport:
    """Everything the mailing page shows, from its non-test messages, in three queries."""
    now = now or timezone.now()
    messages = Message.objects.filter(mailing_id=mailing.pk, is_test=False).order_by()
    counts = _counts(messages)
    statuses = {status: counts[f"status_{status}"] for status in Status.values}
    skipped = {reason: counts[f"skipped_{reason}"] for reason in SkipReason.values}
    total = counts["total"]
    audience = {"reachable": total - statuses[Status.SKIPPED]}
    audience.update({group: sum(skipped[reason] for reason in reasons)
                     for group, reasons in AUDIENCE_GROUPS.items()})
    funnel = {"queued": sum(statuses[status] for status in WAITING)}
    funnel.update({stage: counts[f"stage_{stage}"] for stage in FUNNEL_STAGES})
    bucket_minutes = _bucket_minutes(mailing=mailing, now=now)
    costs, errors = _costs_and_errors(messages)
    return MailingReport(
        mailing_id=mailing.pk, state=mailing.state, channel=mailing.channel, generated_at=now,
        frozen=total > 0,
        live=mailing.state in (Mailing.State.PREPARING, Mailing.State.SENDING),
        total=total, audience=audience,
        address_issues={reason: skipped[reason] for reason in ADDRESS_ISSUES},
        funnel=funnel, statuses=statuses,
        not_delivered={status: statuses[status] for status in NOT_DELIVERED},
        skipped_by_reason=skipped, bucket_minutes=bucket_minutes,
        throughput=_throughput(messages, bucket_minutes=bucket_minutes,
                               origin=mailing.started_at or mailing.created_at),
        cost_total=sum((cost.cost for cost in costs), Decimal(0)),
        cost_by_gateway=costs, errors=errors,
    )


def _counts(messages: Any) -> dict[str, int]:
    """Every count of the report in one pass over the mailing's messages."""
    aggregates: dict[str, Any] = {"total": Count("pk")}
    aggregates.update({f"status_{status}": Count("pk", filter=Q(status=status))
                       for status in Status.values})
    aggregates.update({f"skipped_{reason}": Count("pk", filter=Q(status=Status.SKIPPED,
                                                                 skip_reason=reason))
                       for reason in SkipReason.values})
    aggregates.update({f"stage_{stage}": Count("pk", filter=condition)
                       for stage, condition in FUNNEL_STAGES.items()})
    return messages.aggregate(**aggregates)


def _bucket_minutes(*, mailing: Mailing, now: datetime) -> int:
    """The narrowest bucket that draws the mailing's sending time in MAX_BUCKETS or fewer."""
    if mailing.started_at is None:
        return BUCKET_MINUTES[0]
    span = ((mailing.completed_at or now) - mailing.started_at).total_seconds() / 60
    wanted = math.ceil(max(span, 1) / MAX_BUCKETS)
    return next((minutes for minutes in BUCKET_MINUTES if minutes >= wanted), BUCKET_MINUTES[-1])


class _DateBin(Func):
    """PostgreSQL's date_bin(stride, source, origin): the start of the stride holding source."""

    function = "DATE_BIN"
    output_field = DateTimeField()


def _throughput(messages: Any, *, bucket_minutes: int,
                origin: datetime) -> list[ThroughputBucket]:
    """Messages handed to the provider per bucket of sent_at (empty buckets left out)."""
    stride = timedelta(minutes=bucket_minutes)
    origin = origin.replace(second=0, microsecond=0)
    rows = (messages.filter(sent_at__isnull=False)
            .annotate(bucket=_DateBin(Value(stride), F("sent_at"), Value(origin)))
            .values("bucket").annotate(sent=Count("pk")).order_by("bucket"))
    return [ThroughputBucket(start=row["bucket"], sent=row["sent"],
                             per_minute=round(row["sent"] / bucket_minutes, 2))
            for row in rows]


def _costs_and_errors(messages: Any) -> tuple[list[GatewayCost], list[ErrorGroup]]:
    """Cost per gateway and errors per (gateway, provider code), from one grouped query."""
    has_error = ~Q(error_code="") | ~Q(error="")
    rows = (messages.filter(Q(cost__isnull=False) | has_error)
            .values("gateway_id", "gateway__name", "error_code")
            .annotate(messages=Count("pk", filter=Q(cost__isnull=False)), cost=Sum("cost"),
                      failures=Count("pk", filter=has_error),
                      # Any one text of the group will do; the empty ones are left out.
                      example=Max("error", filter=has_error))
            .order_by("gateway__name", "error_code"))
    costs: dict[int | None, GatewayCost] = {}
    errors: list[ErrorGroup] = []
    for row in rows:
        gateway = row["gateway__name"] or "—"
        if row["cost"] is not None:
            cost = costs.setdefault(row["gateway_id"], GatewayCost(
                gateway_id=row["gateway_id"], gateway=gateway, messages=0, cost=Decimal(0)))
            cost.messages += row["messages"]
            cost.cost += row["cost"]
        if row["failures"]:
            errors.append(ErrorGroup(gateway_id=row["gateway_id"], gateway=gateway,
                                     code=row["error_code"], count=row["failures"],
                                     example=row["example"] or ""))
    errors.sort(key=lambda group: (group.gateway, -group.count, group.code))
    return list(costs.values()), errors
