"""`manage.py seed_demo --members N`: append demo members with consents, accounts and orders."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loyalty.demo import demo_seed

TABLES = (("members", "members"), ("consents", "consents"), ("consent_events", "consent events"),
          ("loyalty_accounts", "loyalty accounts"), ("orders", "orders"),
          ("order_lines", "order lines"), ("products", "products"), ("tiers", "tiers"))


class Command(BaseCommand):
    help = ("Append realistic demo members with marketing consents, loyalty accounts and two "
            "years of orders. Bulk writes only (COPY on PostgreSQL); fine for millions.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--members", type=int, required=True,
                            help="How many members to add.")
        parser.add_argument("--orders-per-member", type=float, default=3.0,
                            help="Average orders per member (default 3).")
        parser.add_argument("--seed", type=int, default=None,
                            help="Random seed, for the same names and numbers on every run.")
        parser.add_argument("--batch-size", type=int, default=10_000,
                            help="Members generated and written per transaction.")

    def handle(self, *args: Any, members: int, orders_per_member: float, seed: int | None,
               batch_size: int, verbosity: int, **options: Any) -> None:
        if members <= 0:
            raise CommandError(f"--members must be a positive number, not {members}")
        if orders_per_member < 0:
            raise CommandError(f"--orders-per-member must not be negative, not {orders_per_member}")
        if batch_size <= 0:
            raise CommandError(f"--batch-size must be a positive number, not {batch_size}")

        started = time.monotonic()

        def progress(counts: dict[str, int]) -> None:
            elapsed = time.monotonic() - started
            print(f"  {counts['members']:,} of {members:,} members, "
                  f"{sum(counts.values()):,} rows, {elapsed:.0f} s", file=sys.stderr)

        counts = demo_seed(members=members, orders_per_member=orders_per_member, seed=seed,
                           batch_size=batch_size, progress=progress if verbosity > 1 else None)
        elapsed = time.monotonic() - started
        total = sum(counts.values())
        tables = ", ".join(f"{counts[key]:,} {label}" for key, label in TABLES if counts[key])
        self.stdout.write(f"seed_demo: wrote {tables} ({total:,} rows) in {elapsed:.1f} s, "
                          f"{total / elapsed:,.0f} rows/s")
