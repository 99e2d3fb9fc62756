"""What a mailing's control group and A/B test show: the lift of the members sent to over the
members held out, and each variant's open, click and conversion rates.

A member is *reached* when their message was handed to the provider (the report's `sent`
stage, whatever happened next); *converted* when they placed at least one order
(`loyalty.Order`) from the mailing's start until the end of the window. Every figure comes
from a couple of aggregate queries, whatever the audience size.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from communications.models import Mailing, MailingVariant, Message, WinnerMetric, variant_label
from communications.selectors.reports import FUNNEL_STAGES
from loyalty.models import Order

SkipReason = Message.SkipReason

# Without a campaign (whose attribution window says it), orders this many days after the
# start count as conversions.
DEFAULT_WINDOW_DAYS = 7
# The two-sided 95% quantile of the normal distribution.
Z_95 = 1.959963984540054
REACHED = FUNNEL_STAGES["sent"]


@dataclass(frozen=True)
class GroupFigures:
    members: int
    converted: int
    revenue: Decimal

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.members if self.members else None

    @property
    def revenue_per_member(self) -> Decimal | None:
        return self.revenue / self.members if self.members else None


@dataclass(frozen=True)
class Lift:
    """Sent vs held out. `absolute` is the difference of the conversion rates, with its 95%
    confidence interval by the normal approximation for a difference of two proportions
    (Wald); `relative` is that difference over the holdout's rate. None where a group is empty
    (or, for `relative`, nobody in the holdout converted)."""

    window_days: int
    starts_at: datetime | None
    ends_at: datetime | None
    sent: GroupFigures
    holdout: GroupFigures
    absolute: float | None
    ci_low: float | None
    ci_high: float | None
    relative: float | None

    def as_dict(self) -> dict[str, Any]:
        figures = asdict(self)
        for group in ("sent", "holdout"):
            figures[group].update(
                conversion_rate=getattr(self, group).conversion_rate,
                revenue_per_member=getattr(self, group).revenue_per_member)
        return figures


def conversion_window(*, mailing: Mailing, window_days: int | None = None) -> int:
    """Days after the start an order counts: `window_days` if given, else the campaign's
    attribution window, else DEFAULT_WINDOW_DAYS."""
    if window_days is not None:
        return window_days
    campaign = mailing.campaign if mailing.campaign_id else None
    return getattr(campaign, "attribution_window_days", None) or DEFAULT_WINDOW_DAYS


def mailing_lift(*, mailing: Mailing, window_days: int | None = None) -> Lift:
    """The mailing's lift over its control group, in two queries: the members of each group
    from the messages, then the converted members and revenue of each from the orders."""
    days = conversion_window(mailing=mailing, window_days=window_days)
    starts = mailing.started_at
    ends = starts + timedelta(days=days) if starts is not None else None
    messages = Message.objects.filter(mailing_id=mailing.pk, is_test=False).order_by()
    held = Q(status=Message.Status.SKIPPED, skip_reason=SkipReason.HOLDOUT)
    sizes = messages.aggregate(
        sent=Count("member_id", distinct=True, filter=REACHED),
        holdout=Count("member_id", distinct=True, filter=held))
    converted: dict[str, Any] = {}
    if starts is not None and (sizes["sent"] or sizes["holdout"]):
        groups = {"sent": messages.filter(REACHED).values("member_id"),
                  "holdout": messages.filter(held).values("member_id")}
        orders = Order.objects.filter(placed_at__gte=starts, placed_at__lt=ends).order_by()
        aggregates: dict[str, Any] = {}
        for name, members in groups.items():
            aggregates[f"{name}_converted"] = Count("member_id", distinct=True,
                                                    filter=Q(member_id__in=members))
            aggregates[f"{name}_revenue"] = Sum("total", filter=Q(member_id__in=members))
        converted = orders.aggregate(**aggregates)
    sent, holdout = (GroupFigures(members=sizes[name],
                                  converted=converted.get(f"{name}_converted") or 0,
                                  revenue=converted.get(f"{name}_revenue") or Decimal(0))
                     for name in ("sent", "holdout"))
    absolute = ci_low = ci_high = relative = None
    if sent.members and holdout.members:
        p1, p0 = sent.conversion_rate, holdout.conversion_rate
        absolute = p1 - p0
        margin = Z_95 * math.sqrt(p1 * (1 - p1) / sent.members + p0 * (1 - p0) / holdout.members)
        ci_low, ci_high = absolute - margin, absolute + margin
        relative = absolute / p0 if p0 else None
    return Lift(window_days=days, starts_at=starts, ends_at=ends, sent=sent, holdout=holdout,
                absolute=absolute, ci_low=ci_low, ci_high=ci_high, relative=relative)


@dataclass(frozen=True)
class VariantResult:
    """A variant's test part: its messages, how many reached their member, and of those how
    many were opened, clicked, or converted (the member ordered from the start until `until`)."""

    position: int
    label: str
    template_id: int
    template: str
    messages: int
    sent: int
    opened: int
    clicked: int
    converted: int

    def rate(self, metric: str) -> float | None:
        count = {WinnerMetric.OPEN_RATE: self.opened, WinnerMetric.CLICK_RATE: self.clicked,
                 WinnerMetric.CONVERSION_RATE: self.converted}[metric]
        return count / self.sent if self.sent else None

    @property
    def open_rate(self) -> float | None:
        return self.rate(WinnerMetric.OPEN_RATE)

    @property
    def click_rate(self) -> float | None:
        return self.rate(WinnerMetric.CLICK_RATE)

    @property
    def conversion_rate(self) -> float | None:
        return self.rate(WinnerMetric.CONVERSION_RATE)


def variant_results(*, mailing: Mailing, until: datetime | None = None) -> list[VariantResult]:
    """Every variant of the mailing with its test part's figures, in position order, in one
    grouped query over the test messages (the rest, without a variant, is not counted).
    Conversions count orders from the start until `until` (default: the winner's choice,
    else now), so the report shows what the decision saw."""
    variants = list(MailingVariant.objects.filter(mailing_id=mailing.pk)
                    .select_related("template").order_by("position"))
    if not variants:
        return []
    until = until or mailing.winner_chosen_at or timezone.now()
    ordered = Exists(Order.objects.filter(
        member_id=OuterRef("member_id"), placed_at__gte=mailing.started_at or until,
        placed_at__lt=until))
    rows = {row["variant"]: row for row in (
        Message.objects.filter(mailing_id=mailing.pk, is_test=False, variant__isnull=False)
        .order_by().values("variant")
        .annotate(messages=Count("pk"), sent=Count("pk", filter=REACHED),
                  opened=Count("pk", filter=REACHED & FUNNEL_STAGES["opened"]),
                  clicked=Count("pk", filter=REACHED & FUNNEL_STAGES["clicked"]),
                  converted=Count("pk", filter=REACHED & Q(ordered))))}
    empty = {"messages": 0, "sent": 0, "opened": 0, "clicked": 0, "converted": 0}
    return [VariantResult(position=variant.position, label=variant_label(variant.position),
                          template_id=variant.template_id, template=variant.template.name,
                          **{key: rows.get(variant.position, empty)[key] for key in empty})
            for variant in variants]


@dataclass(frozen=True)
class Experiment:
    """The report's control group and A/B test section."""

    lift: Lift | None
    variants: list[VariantResult]
    metric: str
    metric_label: str
    test_ends_at: datetime | None
    winner: str | None  # the winner's label, once chosen
    winner_chosen_at: datetime | None


def mailing_experiment(*, mailing: Mailing) -> Experiment | None:
    """The lift (with a control group) and the variants' figures (with an A/B test) of a
    mailing; None when it has neither."""
    variants = variant_results(mailing=mailing)
    if not mailing.holdout_percent and not variants:
        return None
    winner = (MailingVariant.objects.filter(pk=mailing.winner_id)
              .values_list("position", flat=True).first() if mailing.winner_id else None)
    return Experiment(
        lift=mailing_lift(mailing=mailing) if mailing.holdout_percent else None,
        variants=variants, metric=mailing.winner_metric,
        metric_label=WinnerMetric(mailing.winner_metric).label,
        test_ends_at=(mailing.started_at + timedelta(hours=mailing.test_hours)
                      if variants and mailing.started_at else None),
        winner=variant_label(winner) if winner else None,
        winner_chosen_at=mailing.winner_chosen_at)
