"""Attribution: each order credited to the campaign and mailing that touched its member last.

The rule (also in docs/attribution.md):

- A *touch* is a message of a campaign's mailing (regular or trigger; never a test send) being
  delivered, opened or clicked for the member who placed the order. The campaign says how deep
  a touch must go (`Campaign.attribution_touch`: delivered or deeper, opened or deeper, clicked)
  and for how many days after it an order is credited (`attribution_window_days`, 1 to 30).
- An order placed at T goes to the latest touch at or before T that is still inside its own
  campaign's window (T − window < touch time). A message opened and clicked counts at its
  latest qualifying moment before T. Equal times: the deeper touch, then the later message.
- One credit per order. A pass credits the orders recorded since the last one
  (`attribution_pass`, every ENGAGE_ATTRIBUTION_TICK seconds); an order without a touch gets
  no credit. `attribute_orders` re-runs a period from scratch, so receipts that came late
  (an open recorded after the order was read) are taken in.
- A refund lowers the credit's revenue; once the whole order is refunded the credit is
  reversed (`reversed_at`) and leaves the campaign's figures.

Everything is one INSERT … SELECT per pass or period: the orders, their members' messages of
the last ATTRIBUTION_WINDOW_MAX_DAYS days (by message_member_idx), the best touch per order by
a window function, written with ON CONFLICT DO NOTHING so overlapping passes write nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import ATTRIBUTION_WINDOW_MAX_DAYS
from communications.models import AttributionPosition, Message, OrderCredit
from loyalty.event_log import event_log_horizon
from loyalty.models import Order

# Older than any message a touch can come from; stands in for "no such touch" in GREATEST.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _days_before(column: str, days: str) -> str:
    """SQL for `column` minus `days` (an integer SQL expression) days, on either engine."""
    if connection.vendor == "postgresql":
        return f"({column} - ({days}) * INTERVAL '1 day')"
    # SQLite keeps datetimes as ISO text, which compares in time order.
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {column}, '-' || ({days}) || ' days')"


def _credits_sql(orders_where: str) -> str:
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    table = {model: model._meta.db_table for model in (Order, Message, OrderCredit)}
    # Each timestamp counts when it is at or before the order and deep enough for its
    # campaign; the others stand at _NEVER so GREATEST picks the latest qualifying one.
    clicked = "CASE WHEN m.clicked_at <= o.placed_at THEN m.clicked_at ELSE %(never)s END"
    opened = ("CASE WHEN c.attribution_touch <> 'clicked' AND m.opened_at <= o.placed_at"
              " THEN m.opened_at ELSE %(never)s END")
    delivered = ("CASE WHEN c.attribution_touch = 'delivered' AND m.delivered_at <= o.placed_at"
                 " THEN m.delivered_at ELSE %(never)s END")
    return f"""
        WITH orders AS (
            SELECT o.id, o.member_id, o.placed_at, o.total, o.refunded_amount, o.refunded_at,
                   o.discount, o.points_earned
            FROM {table[Order]} o WHERE {orders_where}
        ), touches AS (
            SELECT o.id AS order_id, o.placed_at, m.id AS message_id, m.mailing_id,
                   g.campaign_id, c.attribution_window_days AS window_days,
                   {clicked} AS clicked, {opened} AS opened, {delivered} AS delivered
            FROM orders o
            JOIN {table[Message]} m ON m.member_id = o.member_id
                AND m.created_at >= {_days_before('o.placed_at', str(ATTRIBUTION_WINDOW_MAX_DAYS))}
                AND m.created_at <= o.placed_at
            JOIN communications_mailing g ON g.id = m.mailing_id
            JOIN campaigns_campaign c ON c.id = g.campaign_id
            WHERE m.is_test = %(false)s
        ), latest AS (
            SELECT t.*, {greatest}(t.clicked, t.opened, t.delivered) AS touched_at
            FROM touches t
        ), inside AS (
            SELECT l.* FROM latest l
            WHERE l.touched_at > %(never)s
              AND l.touched_at > {_days_before('l.placed_at', 'l.window_days')}
        ), ranked AS (
            SELECT l.*, row_number() OVER (
                PARTITION BY l.order_id
                ORDER BY l.touched_at DESC,
                         CASE WHEN l.touched_at = l.clicked THEN 3
                              WHEN l.touched_at = l.opened THEN 2 ELSE 1 END DESC,
                         l.message_id DESC) AS place
            FROM inside l
        )
        INSERT INTO {table[OrderCredit]} (
            order_id, campaign_id, mailing_id, message_id, member_id, touch, touched_at,
            placed_at, revenue, discount, points, credited_at, reversed_at)
        SELECT r.order_id, r.campaign_id, r.mailing_id, r.message_id, o.member_id,
               CASE WHEN r.touched_at = r.clicked THEN 'clicked'
                    WHEN r.touched_at = r.opened THEN 'opened' ELSE 'delivered' END,
               r.touched_at, o.placed_at, o.total - o.refunded_amount, o.discount,
               o.points_earned, %(now)s,
               CASE WHEN o.refunded_at IS NOT NULL AND o.refunded_amount >= o.total
                    THEN o.refunded_at END
        FROM ranked r JOIN orders o ON o.id = r.order_id
        WHERE r.place = 1
        ON CONFLICT (order_id) DO NOTHING
    """


def _credit(orders_where: str, params: dict[str, Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_credits_sql(orders_where),
                       {**params, "never": _NEVER, "false": False, "now": timezone.now()})
        if cursor.rowcount >= 0:
            return cursor.rowcount
        # Python's sqlite3 counts no rows for a statement that starts with WITH.
        cursor.execute("SELECT changes()")
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class AttributionRun:
    orders: int
    credited: int


def orders_attribute(*, placed_from: datetime, placed_to: datetime, redo: bool = False
                     ) -> AttributionRun:
    """Credit the orders placed in [placed_from, placed_to). With `redo`, their credits are
    taken back first and decided again, in one transaction (a report never sees the period
    half done)."""
    if placed_to <= placed_from:
        raise ValueError("the period ends before it starts")
    where = "o.placed_at >= %(placed_from)s AND o.placed_at < %(placed_to)s"
    params = {"placed_from": placed_from, "placed_to": placed_to}
    with transaction.atomic():
        if redo:
            OrderCredit.objects.filter(placed_at__gte=placed_from, placed_at__lt=placed_to).delete()
        orders = Order.objects.filter(placed_at__gte=placed_from, placed_at__lt=placed_to).count()
        return AttributionRun(orders=orders, credited=_credit(where, params))


def attribution_pass(*, now: datetime | None = None) -> int:
    """Credit the orders recorded since the last pass; returns how many were credited.

    The position moves to the event-log horizon (loyalty.event_log): no order still to commit
    can have been stamped before it, so none is passed over. Orders read twice on the way
    (the position starts a second early) are absorbed by the one credit per order. The
    position row is locked for the pass, so two workers never run one at once. On the very
    first pass the position starts now: orders recorded before go through `attribute_orders`.
    """
    with transaction.atomic():
        position = AttributionPosition.objects.select_for_update().filter(pk=1).first()
        horizon = event_log_horizon() if now is None else now
        if position is None:
            AttributionPosition.objects.create(pk=1, read_until=horizon)
            return 0
        if horizon <= position.read_until:
            return 0
        credited = _credit("o.recorded_at > %(after)s AND o.recorded_at <= %(until)s",
                           {"after": position.read_until, "until": horizon})
        position.read_until = horizon
        position.save(update_fields=["read_until"])
    return credited


def credit_refund_apply(*, order: Order) -> None:
    """Bring the order's credit (if any) in line with its refunds; inside the refund's
    transaction, with the order row locked."""
    fully = order.refunded_at is not None and order.refunded_amount >= order.total
    OrderCredit.objects.filter(order=order).update(
        revenue=order.total - order.refunded_amount,
        reversed_at=order.refunded_at if fully else None)


def credit_explain(credit: OrderCredit) -> str:
    """The credit in a sentence, for the order's page and the CSV."""
    mailing = credit.mailing
    campaign = credit.campaign
    when = timezone.localtime(credit.touched_at).strftime("%Y-%m-%d %H:%M")
    text = (f"Credited to mailing “{mailing.name}” of campaign “{campaign.name}”: its message "
            f"was {credit.touch} at {when}, within the campaign's "
            f"{campaign.attribution_window_days}-day window before the order.")
    if credit.reversed_at is not None:
        text += " Reversed: the order was refunded in full."
    elif credit.revenue < credit.order.total:
        text += f" Revenue lowered to {credit.revenue} by a partial refund."
    return text
