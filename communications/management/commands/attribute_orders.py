"""`manage.py attribute_orders --day 2026-12-01` (or `--from … --to …`): credit a period's
orders to campaigns again from scratch, taking in receipts that came after the orders were
first read (communications/services/attribution.py)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from communications.services.attribution import orders_attribute


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"not a date (YYYY-MM-DD): {text!r}") from error


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class Command(BaseCommand):
    help = ("Credit the orders placed on a day (or from one day to another, both included) to "
            "the campaigns that touched their members last, replacing their earlier credits.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--day", help="One day, YYYY-MM-DD, in the site's time zone.")
        parser.add_argument("--from", dest="first", help="The first day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="last", help="The last day, YYYY-MM-DD (included).")
        parser.add_argument("--keep", action="store_true",
                            help="Keep the credits already given; credit only orders without.")

    def handle(self, *args: Any, day: str | None, first: str | None, last: str | None,
               keep: bool, **options: Any) -> None:
        if day and (first or last):
            raise CommandError("give --day, or --from and --to, not both")
        if day:
            first = last = day
        if not (first and last):
            raise CommandError("give --day, or --from and --to")
        first_day, last_day = _day(first), _day(last)
        if last_day < first_day:
            raise CommandError(f"--to {last_day} is before --from {first_day}")
        run = orders_attribute(placed_from=_start_of(first_day),
                               placed_to=_start_of(last_day + timedelta(days=1)), redo=not keep)
        self.stdout.write(f"{run.orders:,} orders placed {first_day} to {last_day}: "
                          f"{run.credited:,} credited to a campaign.")
