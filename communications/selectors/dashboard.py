"""The marketer's home page: what is sending now, what is scheduled, last week's results.

Two queries whatever the number of mailings: one for the mailings of the three sections, one
aggregate over their messages grouped by mailing (on the (mailing, status) index), each figure
a filtered count. Trigger mailings have their own screen and never end, so only regular
mailings are here. Test sends count nowhere.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from communications.models import Mailing, Message
from communications.selectors.reports import FUNNEL_STAGES, NOT_DELIVERED, WAITING

State = Mailing.State
LIVE_STATES = (State.PREPARING, State.SENDING, State.PAUSED)
UPCOMING_STATES = (State.SCHEDULED, State.RECURRING)
# How far ahead "scheduled" looks and how far back "last week" does.
WINDOW = timedelta(days=7)
# The sending rate is what went out in this last stretch, so a paused or stalled mailing
# shows 0 rather than its average since the start.
RATE_WINDOW = timedelta(minutes=5)


@dataclass
class MailingFigures:
    """A mailing's messages (non-test) as the dashboard counts them."""

    audience: int = 0  # messages frozen: one per member of the audience and channel
    waiting: int = 0  # not yet handed to the provider
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    # Ended without reaching the member or in doubt: failed, rejected, bounced, expired...
    failed: int = 0
    skipped: int = 0
    sent_recently: int = 0  # within RATE_WINDOW
    cost: Decimal = Decimal(0)

    def add(self, other: MailingFigures) -> None:
        for name in ("audience", "waiting", "sent", "delivered", "opened", "clicked", "failed",
                     "skipped", "sent_recently", "cost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class DashboardMailing:
    id: int
    name: str
    state: str
    state_label: str
    channel: str | None
    campaign: str | None
    audience_source: str  # the target group, static list or member it goes to
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    figures: MailingFigures = field(default_factory=MailingFigures)

    @property
    def progress_percent(self) -> int:
        """The share of the audience past waiting: sent, skipped or failed."""
        if not self.figures.audience:
            return 0
        return int(100 * (self.figures.audience - self.figures.waiting) / self.figures.audience)

    @property
    def rate_per_minute(self) -> float:
        return round(self.figures.sent_recently / (RATE_WINDOW.total_seconds() / 60), 1)

    def rate(self, stage: str) -> float | None:
        """`stage` (delivered, opened, clicked) as a percentage of the sent messages."""
        if not self.figures.sent:
            return None
        return round(100 * getattr(self.figures, stage) / self.figures.sent, 1)


@dataclass
class MailingDashboard:
    generated_at: datetime
    sending: list[DashboardMailing]
    scheduled: list[DashboardMailing]
    last_week: list[DashboardMailing]
    last_week_totals: MailingFigures
    window_days: int = WINDOW.days
    rate_window_minutes: int = int(RATE_WINDOW.total_seconds() // 60)


def mailing_dashboard(*, now: datetime | None = None) -> MailingDashboard:
    """Live mailings (preparing, sending, paused) with their progress and sending rate; those
    due in the next 7 days (or overdue); those completed in the last 7 days with their results
    and totals."""
    now = now or timezone.now()
    week_ago, week_ahead = now - WINDOW, now + WINDOW
    mailings = list(
        Mailing.objects.filter(kind=Mailing.Kind.REGULAR)
        .filter(Q(state__in=LIVE_STATES)
                | Q(state__in=UPCOMING_STATES, scheduled_at__lte=week_ahead)
                | Q(state=State.COMPLETED, completed_at__gte=week_ago))
        .select_related("campaign", "template", "target_group", "static_list")
        .only("name", "state", "scheduled_at", "started_at", "completed_at", "member_id",
              "campaign__name", "template__channel", "target_group__name",
              "static_list__name")
    )
    rows = [_row(mailing) for mailing in mailings]
    with_messages = [row for row in rows if row.state not in UPCOMING_STATES]
    figures = _figures([row.id for row in with_messages], since=now - RATE_WINDOW)
    for row in with_messages:
        row.figures = figures.get(row.id, MailingFigures())
    sending = sorted((row for row in rows if row.state in LIVE_STATES),
                     key=lambda row: (row.started_at or now, row.id))
    scheduled = sorted((row for row in rows if row.state in UPCOMING_STATES),
                       key=lambda row: (row.scheduled_at or now, row.id))
    last_week = sorted((row for row in rows if row.state == State.COMPLETED),
                       key=lambda row: (row.completed_at or now, row.id), reverse=True)
    totals = MailingFigures()
    for row in last_week:
        totals.add(row.figures)
    return MailingDashboard(generated_at=now, sending=sending, scheduled=scheduled,
                            last_week=last_week, last_week_totals=totals)


def _row(mailing: Mailing) -> DashboardMailing:
    if mailing.target_group_id:
        source = f"Target group: {mailing.target_group.name}"
    elif mailing.static_list_id:
        source = f"Static list: {mailing.static_list.name}"
    elif mailing.member_id:
        source = f"Member {mailing.member_id}"
    else:
        source = "—"
    return DashboardMailing(
        id=mailing.pk, name=mailing.name, state=mailing.state,
        state_label=mailing.get_state_display(), channel=mailing.channel,
        campaign=mailing.campaign.name if mailing.campaign_id else None,
        audience_source=source, scheduled_at=mailing.scheduled_at,
        started_at=mailing.started_at, completed_at=mailing.completed_at)


def _figures(mailing_ids: list[int], *, since: datetime) -> dict[int, MailingFigures]:
    """Every figure of these mailings in one query grouped by mailing."""
    if not mailing_ids:
        return {}
    Status = Message.Status
    aggregates: dict[str, Any] = {
        "audience": Count("pk"),
        "waiting": Count("pk", filter=Q(status__in=WAITING)),
        **{stage: Count("pk", filter=condition) for stage, condition in FUNNEL_STAGES.items()},
        "failed": Count("pk", filter=Q(status__in=NOT_DELIVERED)),
        "skipped": Count("pk", filter=Q(status=Status.SKIPPED)),
        "sent_recently": Count("pk", filter=Q(sent_at__gte=since)),
        "cost": Sum("cost"),
    }
    rows = (Message.objects.filter(mailing_id__in=mailing_ids, is_test=False).order_by()
            .values("mailing_id").annotate(**aggregates))
    return {row.pop("mailing_id"): MailingFigures(**{**row, "cost": row["cost"] or Decimal(0)})
            for row in rows}


LAST_WEEK_CSV_HEADER = ["mailing_id", "mailing", "campaign", "channel", "completed_at",
                        "audience", "sent", "delivered", "opened", "clicked", "failed",
                        "skipped", "cost"]


def last_week_csv_rows(dashboard: MailingDashboard) -> Iterator[list[Any]]:
    """The last-week table as CSV rows (LAST_WEEK_CSV_HEADER): a row per mailing, then the
    totals. `failed` counts every message that ended without reaching the member."""
    for row in dashboard.last_week:
        yield [row.id, row.name, row.campaign, row.channel, row.completed_at,
               *_results(row.figures)]
    yield ["", "Total", "", "", "", *_results(dashboard.last_week_totals)]


def _results(figures: MailingFigures) -> list[Any]:
    return [figures.audience, figures.sent, figures.delivered, figures.opened,
            figures.clicked, figures.failed, figures.skipped, figures.cost]
