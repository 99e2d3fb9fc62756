"""A campaign's results as a loyalty program reads them: what it cost, whom it reached, what
its credited orders brought (communications.services.attribution), and each mailing's funnel.

Definitions (shown on the campaign page and in docs/attribution.md):
- reached: members with at least one message that went out (the funnel's `sent` stage);
- orders, revenue: the orders credited to the campaign, less refunds (reversed credits out);
- average order: revenue / orders;
- active members: members with a credited order (the campaign's buyers);
- discounts, points: what the credited orders were given;
- cost per member reached: spend / reached; acquisition cost: spend / active members;
- conversion: active members / reached; ROI: (revenue − spend) / spend.
A ratio whose divisor is zero is None ("—" on the page), never 0 or infinity.

Five queries whatever the size: the mailings, their messages by mailing (funnel and cost),
the distinct members reached, the credits by mailing, and the distinct buyers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from campaigns.models import Campaign
from communications.models import Mailing, Message, OrderCredit
from communications.selectors.experiments import Lift, mailing_lift
from communications.selectors.reports import FUNNEL_STAGES

ZERO = Decimal(0)
STAGES = tuple(FUNNEL_STAGES)


def _ratio(part: Any, whole: Any) -> Decimal | None:
    if not whole:
        return None
    return Decimal(part) / Decimal(whole)


@dataclass(frozen=True)
class MailingResult:
    """One mailing's line of the campaign report."""

    mailing_id: int
    name: str
    state: str
    started_at: Any
    audience: int
    funnel: dict[str, int]
    skipped: int
    held_out: int
    failed: int
    spent: Decimal
    orders: int
    revenue: Decimal

    @property
    def roi(self) -> Decimal | None:
        return _ratio(self.revenue - self.spent, self.spent)

    @property
    def conversion(self) -> Decimal | None:
        return _ratio(self.orders, self.funnel["sent"])


@dataclass(frozen=True)
class CampaignMetrics:
    campaign_id: int
    currency: str
    budget: Decimal | None
    spent: Decimal
    messages_sent: int
    members_reached: int
    orders: int
    revenue: Decimal
    active_members: int
    discounts: Decimal
    points: int
    mailings: list[MailingResult] = field(default_factory=list)

    @property
    def average_order(self) -> Decimal | None:
        return _ratio(self.revenue, self.orders)

    @property
    def cost_per_member_reached(self) -> Decimal | None:
        return _ratio(self.spent, self.members_reached)

    @property
    def acquisition_cost(self) -> Decimal | None:
        return _ratio(self.spent, self.active_members)

    @property
    def conversion(self) -> Decimal | None:
        return _ratio(self.active_members, self.members_reached)

    @property
    def roi(self) -> Decimal | None:
        return _ratio(self.revenue - self.spent, self.spent)

    @property
    def budget_used(self) -> Decimal | None:
        return _ratio(self.spent, self.budget)


def _not_held_out() -> Q:
    # The holdout's messages are skipped with their reason; they never went out.
    return ~Q(status=Message.Status.SKIPPED, skip_reason="holdout")


# Sort memory for the report's two distinct counts (a million members reached sort in memory
# instead of spilling to disk: 0.26 s instead of 0.45 s); set for its transaction only.
REPORT_WORK_MEM = "64MB"


def campaign_metrics(campaign: Campaign) -> CampaignMetrics:
    """The campaign's figures and its mailings' lines, in five queries whatever the size."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        return _campaign_metrics(campaign)


def _campaign_metrics(campaign: Campaign) -> CampaignMetrics:
    mailings = list(Mailing.objects.filter(campaign_id=campaign.pk)
                    .only("pk", "name", "state", "started_at").order_by("started_at", "pk"))
    # By the mailings' ids rather than a join: the planner then sees how many messages that is.
    messages = Message.objects.filter(mailing_id__in=[m.pk for m in mailings],
                                      is_test=False).order_by()
    by_mailing = {row["mailing_id"]: row for row in messages.values("mailing_id").annotate(
        audience=Count("pk"),
        skipped=Count("pk", filter=Q(status=Message.Status.SKIPPED) & _not_held_out()),
        held_out=Count("pk", filter=Q(status=Message.Status.SKIPPED, skip_reason="holdout")),
        failed=Count("pk", filter=Q(status__in=(
            Message.Status.FAILED, Message.Status.REJECTED, Message.Status.UNDELIVERED,
            Message.Status.BOUNCED, Message.Status.EXPIRED, Message.Status.UNKNOWN))),
        spent=Sum("cost"),
        **{f"stage_{stage}": Count("pk", filter=condition)
           for stage, condition in FUNNEL_STAGES.items()})}
    # count(DISTINCT) sorts in memory; a GROUP BY member hashed a million groups 3x slower.
    reached = messages.filter(FUNNEL_STAGES["sent"]).aggregate(
        members=Count("member_id", distinct=True))["members"]
    credits = OrderCredit.objects.filter(campaign_id=campaign.pk, reversed_at__isnull=True)
    credited = {row["mailing_id"]: row for row in credits.order_by().values("mailing_id")
                .annotate(orders=Count("pk"), revenue=Sum("revenue"),
                          discounts=Sum("discount"), points=Sum("points"))}
    buyers = credits.aggregate(members=Count("member_id", distinct=True))["members"]
    results = []
    for mailing in mailings:
        row = by_mailing.get(mailing.pk, {})
        credit = credited.get(mailing.pk, {})
        results.append(MailingResult(
            mailing_id=mailing.pk, name=mailing.name, state=mailing.state,
            started_at=mailing.started_at, audience=row.get("audience", 0),
            funnel={stage: row.get(f"stage_{stage}", 0) for stage in STAGES},
            skipped=row.get("skipped", 0), held_out=row.get("held_out", 0),
            failed=row.get("failed", 0), spent=row.get("spent") or ZERO,
            orders=credit.get("orders", 0), revenue=credit.get("revenue") or ZERO))
    return CampaignMetrics(
        campaign_id=campaign.pk, currency=campaign.currency, budget=campaign.budget,
        spent=sum((result.spent for result in results), ZERO),
        messages_sent=sum(result.funnel["sent"] for result in results),
        members_reached=reached,
        orders=sum(result.orders for result in results),
        revenue=sum((result.revenue for result in results), ZERO),
        active_members=buyers,
        discounts=sum((row["discounts"] or ZERO for row in credited.values()), ZERO),
        points=sum(row["points"] or 0 for row in credited.values()),
        mailings=results)


def campaign_lifts(campaign: Campaign, metrics: CampaignMetrics) -> dict[int, Lift]:
    """The lift over its control group of each of the campaign's mailings that held some
    members out (two queries each; mailings without a holdout cost nothing)."""
    held = [result.mailing_id for result in metrics.mailings if result.held_out]
    mailings = Mailing.objects.filter(pk__in=held).select_related("campaign").order_by("pk")
    return {mailing.pk: mailing_lift(mailing=mailing) for mailing in mailings}
