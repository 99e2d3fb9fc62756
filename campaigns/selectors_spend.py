"""What campaigns have spent, and on which channels they talk.

Spend is the sum of the costs of the messages of a campaign's mailings (regular and trigger),
as the gateways reported them when sending (price per message, SMS per segment); test sends
count nowhere. It is read from the messages every time rather than kept in a counter, so it
can never drift from what they say. The channel mix is the channels of its mailings' templates
and of their cascade steps: derived, not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from campaigns.models import Campaign
from communications.models import CascadeStep, Mailing, Message

ZERO = Decimal(0)
_MONEY = DecimalField(max_digits=20, decimal_places=5)


def _priced_messages() -> QuerySet[Message]:
    # Only sent messages carry a cost; the filter lets the planner skip the rest early.
    return Message.objects.filter(is_test=False, cost__isnull=False)


def campaign_spend(campaign_ids: Iterable[int]) -> dict[int, Decimal]:
    """What each campaign's messages cost so far, in one aggregate over their messages
    (a campaign without any: 0)."""
    ids = list(campaign_ids)
    spend = dict.fromkeys(ids, ZERO)
    if not ids:
        return spend
    rows = (_priced_messages().filter(mailing__campaign_id__in=ids).order_by()
            .values("mailing__campaign_id").annotate(total=Sum("cost"))
            .values_list("mailing__campaign_id", "total"))
    spend.update({campaign_id: total or ZERO for campaign_id, total in rows})
    return spend


def budget_remaining(*, budget: Decimal | None, spent: Decimal) -> Decimal | None:
    """What is left of a budget (negative once overspent); None: the campaign has none."""
    return None if budget is None else budget - spent


def campaigns_with_spend(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """`campaigns` with `spent` and (on PostgreSQL) `channels_mailings` / `channels_steps`
    annotated, so a page of them is read in one query (one subquery per row of the page, none
    in Python)."""
    spent = (_priced_messages().filter(mailing__campaign_id=OuterRef("pk")).order_by()
             .values("mailing__campaign_id").annotate(total=Sum("cost")).values("total"))
    mailing_channels = (Mailing.objects.filter(campaign_id=OuterRef("pk"),
                                               template__isnull=False)
                        .order_by().values("template__channel").distinct())
    step_channels = (CascadeStep.objects.filter(mailing__campaign_id=OuterRef("pk"))
                     .order_by().values("template__channel").distinct())
    campaigns = campaigns.annotate(spent=Coalesce(Subquery(spent, output_field=_MONEY),
                                                  Value(ZERO), output_field=_MONEY))
    if connection.vendor != "postgresql":
        # The embedded SQLite default has no arrays: campaign_channels reads each campaign's.
        return campaigns
    return campaigns.annotate(channels_mailings=ArraySubquery(mailing_channels),
                              channels_steps=ArraySubquery(step_channels))


def campaign_channels(campaign: Any) -> list[str]:
    """The channel mix of a campaign from `campaigns_with_spend`, or read for it alone."""
    if hasattr(campaign, "channels_mailings"):
        channels = {*campaign.channels_mailings, *campaign.channels_steps}
    else:
        channels = {
            *Mailing.objects.filter(campaign=campaign, template__isnull=False)
            .values_list("template__channel", flat=True),
            *CascadeStep.objects.filter(mailing__campaign=campaign)
            .values_list("template__channel", flat=True),
        }
    return sorted(channels)


def campaign_spent(campaign: Any) -> Decimal:
    """The spend of a campaign from `campaigns_with_spend`, or read for it alone."""
    if hasattr(campaign, "spent"):
        return campaign.spent
    return campaign_spend([campaign.pk])[campaign.pk]
