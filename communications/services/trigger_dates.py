"""Date-rule triggers: a birthday, N days before a voucher expires, N days since the last
purchase, each once per occasion, on the member's local day.

Each member's local date in their time zone (the program's when theirs is unknown) decides
the occasion; the members' time zones are read once per pass and passed to one statement per
trigger as arrays, with each zone's local day, the looked-at day's window in UTC and the
moment `send_hour` strikes there. Today's occasions are inserted held until that moment
(`held_for = local_time`), so the hourly pass is never late for them, and every pass of the
day finds the same occasion keys ("birthday:2026-12-07", "voucher:17",
"last_purchase:2026-11-06"), which the unique (mailing, member, occasion) constraint inserts
once. A member born on 29 February celebrates on the 28th in common years.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from communications.models import Message, Trigger
from communications.services.compliance import member_zone
from communications.services.dispatch import mailing_dispatch_enqueue
from communications.services.triggers import (
    insert_counts,
    live_triggers,
    live_triggers_each,
    trigger_messages_insert,
)
from loyalty.integration.models import Voucher
from loyalty.models import Order
from members.models import Member

DateRule = Trigger.DateRule


@dataclass(frozen=True)
class _ZoneDay:
    """One time zone's part of a date pass: the members' local day, the UTC window of the day
    the rule looks at, and when the send hour strikes there today."""

    zone: str
    occasion_day: date
    starts: datetime
    ends: datetime
    due: datetime
    feb29_today: bool  # Feb 28 of a common year: members born on Feb 29 celebrate today


def _zone_days(*, zones: Sequence[str], now: datetime, shift_days: int,
               send_hour: int) -> list[_ZoneDay]:
    """Each member time zone's local today, shifted by `shift_days` for the day the rule
    looks at (the voucher's expiry day, the last purchase's day)."""
    days = []
    for name in zones:
        tz: zoneinfo.ZoneInfo = member_zone(name)
        today = now.astimezone(tz).date()
        looked_at = today + timedelta(days=shift_days)
        days.append(_ZoneDay(
            zone=name, occasion_day=looked_at,
            starts=_local_moment(looked_at, time(0), tz),
            ends=_local_moment(looked_at + timedelta(days=1), time(0), tz),
            due=_local_moment(today, time(send_hour), tz),
            feb29_today=(today.month, today.day) == (2, 28) and not _leap(today.year)))
    return days


def _local_moment(day: date, clock: time, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_ZONES_SQL = ("unnest(%s::text[], %s::date[], %s::timestamptz[], %s::timestamptz[], "
              "%s::timestamptz[], %s::boolean[]) AS z (zone, day, starts, ends, due, feb29)")


def _zones_params(days: Sequence[_ZoneDay]) -> list[Any]:
    return [[d.zone for d in days], [d.occasion_day for d in days], [d.starts for d in days],
            [d.ends for d in days], [d.due for d in days], [d.feb29_today for d in days]]


def _date_source(*, trigger: Trigger, days: Sequence[_ZoneDay]) -> tuple[str, list[Any]]:
    """SQL selecting (event_id, member_id, occasion, due, position) of a date rule's
    occasions today, over the members' time zones."""
    members = Member._meta.db_table
    zones = _zones_params(days)
    if trigger.date_rule == DateRule.BIRTHDAY:
        born = ("(EXTRACT(MONTH FROM m.birth_date) = EXTRACT(MONTH FROM z.day) "
                "AND EXTRACT(DAY FROM m.birth_date) = EXTRACT(DAY FROM z.day)) "
                "OR (z.feb29 AND EXTRACT(MONTH FROM m.birth_date) = 2 "
                "AND EXTRACT(DAY FROM m.birth_date) = 29)")
        return (f"SELECT NULL::uuid AS event_id, m.id AS member_id, "
                f"'birthday:' || z.day::text AS occasion, z.due, m.id AS position "
                f"FROM {members} m JOIN {_ZONES_SQL} ON z.zone = m.timezone "
                f"WHERE m.birth_date IS NOT NULL AND ({born})", zones)
    # The earliest and latest instant of the looked-at day anywhere, so the index on the
    # voucher's expiry or the order's time is read for that range only.
    first, last = min(d.starts for d in days), max(d.ends for d in days)
    if trigger.date_rule == DateRule.VOUCHER_EXPIRING:
        vouchers = Voucher._meta.db_table
        return (f"SELECT NULL::uuid AS event_id, v.member_id, 'voucher:' || v.id AS occasion, "
                f"z.due, v.id AS position FROM {vouchers} v "
                f"JOIN {members} m ON m.id = v.member_id "
                f"JOIN {_ZONES_SQL} ON z.zone = m.timezone "
                f"WHERE v.redeemed_at IS NULL AND v.expires_at >= %s AND v.expires_at < %s "
                f"AND v.expires_at >= z.starts AND v.expires_at < z.ends",
                [*zones, first, last])
    orders = Order._meta.db_table
    return (f"SELECT DISTINCT NULL::uuid AS event_id, o.member_id, "
            f"'last_purchase:' || z.day::text AS occasion, z.due, o.member_id AS position "
            f"FROM {orders} o JOIN {members} m ON m.id = o.member_id "
            f"JOIN {_ZONES_SQL} ON z.zone = m.timezone "
            f"WHERE o.placed_at >= %s AND o.placed_at < %s "
            f"AND o.placed_at >= z.starts AND o.placed_at < z.ends "
            f"AND NOT EXISTS (SELECT 1 FROM {orders} later WHERE later.member_id = o.member_id "
            f"AND later.placed_at >= z.ends)",
            [*zones, first, last])


def trigger_dates_run(*, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """One pass over every live date trigger: today's occasions in each member's time zone
    become messages held until the send hour there; {mailing id: counts} of what was
    inserted."""
    now = now or timezone.now()
    if not live_triggers("date_rule").exists():
        return {}
    zones = list(Member.objects.order_by().values_list("timezone", flat=True).distinct())
    if not zones:
        return {}

    def read(trigger: Trigger) -> dict[str, int]:
        shift = {DateRule.BIRTHDAY: 0, DateRule.VOUCHER_EXPIRING: trigger.days or 0,
                 DateRule.DAYS_SINCE_LAST_PURCHASE: -(trigger.days or 0)}[trigger.date_rule]
        days = _zone_days(zones=zones, now=now, shift_days=shift, send_hour=trigger.send_hour)
        inserted = trigger_messages_insert(mailing=trigger.mailing,
                                    source=_date_source(trigger=trigger, days=days),
                                    held_for=Message.HoldReason.LOCAL_TIME, now=now)
        counts = insert_counts(inserted)
        if counts["queued"]:
            transaction.on_commit(lambda mailing_id=trigger.mailing_id:
                                  mailing_dispatch_enqueue(mailing_id=mailing_id))
        return counts

    return live_triggers_each(kind_field="date_rule", read=read)
