"""campaign_report and attribution_day: a campaign of 10 mailings and 1M messages, and 1M
orders over 10 days (100k a day) placed by the seeded members.

The data is written straight into the tables by set-based statements (how a mailing sends is
the dispatch scenarios' business): each mailing's messages go to a tenth of the members, most
delivered, some opened and clicked, a few failed or skipped, each with its cost. The orders
are kept from one run to the next (external ids `BENCH-A-…`, placed in 2030 so they never mix
with the seed's); the campaign and its messages are written again each time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection

from bench.database import table_truncate
from bench.mailings import mailings_clear
from bench.options import Options
from bench.results import Measured, median_of, timed
from campaigns.models import Campaign
from campaigns.selectors_metrics import campaign_metrics
from communications.models import Mailing, Message, OrderCredit
from communications.services.attribution import orders_attribute
from loyalty.models import Order
from members.models import Member

MAILINGS = 10
DAYS = 10
START = datetime(2030, 1, 6, tzinfo=UTC)
ORDER_PREFIX = "BENCH-A-"
WHAT_REPORT = ("campaign_metrics of one campaign: {mailings} mailings, {messages} messages, "
               "{credits} credited orders of {orders} placed over {days} days (five queries: "
               "the mailings, messages by mailing, members reached, credits by mailing, "
               "buyers)")
WHAT_DAY = ("orders_attribute(redo=True) of one day's {orders} orders: the day's credits "
            "taken back, then one INSERT ... SELECT over the orders, their members' messages "
            "of the 30 days before (10 mailings, {messages} messages) and the campaign's rule")


def _sizes(options: Options) -> tuple[int, int]:
    """Messages per mailing and orders per day: 100k each at the default 1M members."""
    members = min(options.members, Member.objects.count())
    return members // MAILINGS, members // 10


def _orders_write(per_day: int) -> int:
    """The bench's orders, written once: `per_day` a day for DAYS days, by random members."""
    existing = Order.objects.filter(external_id__startswith=ORDER_PREFIX).count()
    if existing == per_day * DAYS:
        return existing
    Order.objects.filter(external_id__startswith=ORDER_PREFIX).delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM members_member")
        low, high = cursor.fetchone()
        cursor.execute("""
            INSERT INTO loyalty_order (member_id, external_id, placed_at, total, currency,
                                       discount, points_earned, refunded_amount, recorded_at)
            SELECT m.id, %(prefix)s || n, %(start)s + (n / %(per_day)s) * INTERVAL '1 day'
                       + (n %% %(per_day)s) * INTERVAL '86399 seconds' / %(per_day)s,
                   round((5 + random() * 195)::numeric, 2), 'EUR',
                   CASE WHEN n %% 4 = 0 THEN 2.50 ELSE 0 END, (n %% 50), 0, now()
            FROM generate_series(0, %(total)s - 1) AS n
            JOIN members_member m ON m.id = %(low)s + (hashint4(n::int) & 2147483647)
                                              %% (%(high)s - %(low)s + 1)
        """, {"prefix": ORDER_PREFIX, "start": START, "per_day": per_day,
              "total": per_day * DAYS, "low": low, "high": high})
        cursor.execute("ANALYZE loyalty_order")
    return Order.objects.filter(external_id__startswith=ORDER_PREFIX).count()


def _campaign_write(per_mailing: int) -> Campaign:
    """The campaign and its mailings' messages, written afresh (credits with them)."""
    with connection.cursor() as cursor:
        # TRUNCATE refuses a table with foreign-key checks still pending in the transaction
        # (the smoke test runs in one); outside a transaction this changes nothing.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    table_truncate(OrderCredit)
    mailings_clear()
    Campaign.objects.filter(name="bench campaign").delete()
    campaign = Campaign.objects.create(name="bench campaign", attribution_window_days=7,
                                       currency="EUR")
    for index in range(MAILINGS):
        # Mailings start a day apart, from five days before the first orders.
        started = START + timedelta(days=index - 5)
        mailing = Mailing.objects.create(name=f"bench mailing {index + 1}", campaign=campaign,
                                         state=Mailing.State.COMPLETED, started_at=started,
                                         completed_at=started + timedelta(hours=1))
        with connection.cursor() as cursor:
            cursor.execute(f"""
                INSERT INTO {Message._meta.db_table} (
                    mailing_id, member_id, is_test, channel, address, status, skip_reason,
                    attempts, held_for, provider_id, error_code, error, cost, occasion,
                    created_at, sent_at, delivered_at, opened_at, clicked_at, updated_at)
                SELECT %(mailing)s, m.id, false, 'email', m.email,
                       CASE WHEN r < 0.04 THEN 'skipped' WHEN r < 0.08 THEN 'failed'
                            WHEN r < 0.12 THEN 'sent' WHEN r < 0.18 THEN 'clicked'
                            WHEN r < 0.40 THEN 'opened' ELSE 'delivered' END,
                       CASE WHEN r < 0.04 THEN 'opted_out' ELSE '' END, 1, '', '', '', '',
                       CASE WHEN r >= 0.08 THEN 0.00100 END, '',
                       %(started)s, CASE WHEN r >= 0.08 THEN s.sent END,
                       CASE WHEN r >= 0.12 THEN s.sent + INTERVAL '2 s' END,
                       CASE WHEN r >= 0.12 AND r < 0.40 THEN s.sent + r * INTERVAL '2 days' END,
                       CASE WHEN r >= 0.12 AND r < 0.18 THEN s.sent + r * INTERVAL '2 days'
                                                            + INTERVAL '1 minute' END,
                       %(started)s
                FROM (SELECT id, email, random() AS r FROM members_member
                      WHERE id %% %(mailings)s = %(index)s ORDER BY id LIMIT %(limit)s) m
                CROSS JOIN LATERAL (SELECT %(started)s + m.r * INTERVAL '1 hour' AS sent) s
            """, {"mailing": mailing.pk, "started": started, "mailings": MAILINGS,
                  "index": index, "limit": per_mailing})
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    return campaign


def _prepared(options: Options) -> tuple[Campaign, int, int]:
    per_mailing, per_day = _sizes(options)
    orders = _orders_write(per_day)
    return _campaign_write(per_mailing), orders, per_day


def campaign_report(options: Options) -> Measured:
    """Seconds for the campaign's figures over every mailing, message and credited order."""
    campaign, orders, _ = _prepared(options)
    orders_attribute(placed_from=START, placed_to=START + timedelta(days=DAYS))
    # As autovacuum would leave them on a live database: statistics and visibility maps (the
    # smoke test runs inside a transaction, where only ANALYZE may).
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
    with connection.cursor() as cursor:
        for model in (OrderCredit, Message):
            cursor.execute(f"{command} {model._meta.db_table}")
    metrics = campaign_metrics(campaign)
    value, runs = median_of(options.runs, lambda: timed(lambda: campaign_metrics(campaign))[0])
    messages = Message.objects.filter(mailing__campaign=campaign).count()
    return Measured(messages, value, options.runs, {
        "what": WHAT_REPORT.format(mailings=MAILINGS, messages=messages,
                                   credits=metrics.orders, orders=orders, days=DAYS),
        "per_run_s": runs, "orders": orders, "credited": metrics.orders,
        "revenue": str(metrics.revenue), "spent": str(metrics.spent),
        "members_reached": metrics.members_reached, "roi": str(round(metrics.roi or 0, 2))})


def attribution_day(options: Options) -> Measured:
    """Seconds to credit one day's orders again from scratch (the fifth of ten)."""
    campaign, _, per_day = _prepared(options)
    day = START + timedelta(days=4)
    credited: list[int] = []

    def run() -> float:
        seconds, done = timed(lambda: orders_attribute(
            placed_from=day, placed_to=day + timedelta(days=1), redo=True))
        credited.append(done.credited)
        return seconds

    value, runs = median_of(options.runs, run)
    messages = Message.objects.filter(mailing__campaign=campaign).count()
    return Measured(per_day, value, options.runs, {
        "what": WHAT_DAY.format(orders=per_day, messages=messages),
        "per_run_s": runs, "credited": credited[-1]})
