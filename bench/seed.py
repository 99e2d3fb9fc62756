"""seed_members, and the seeded database the other scenarios reuse."""

from __future__ import annotations

import sys

from django.core.management import call_command

from bench.database import database_recreate, seed_marker_read, seed_marker_write
from bench.options import Options
from bench.results import Measured, timed

# About 10M orders for 1M members, as issue 4's segment figures ask.
ORDERS_PER_MEMBER = 10
SEED = 20_240_601


def seed_members(options: Options) -> Measured:
    """`loyalty.demo.demo_seed` of `--members` members with their orders into a fresh database.

    Rows/s over every row it writes (members, consents, accounts, orders, ...), one run: the
    database is dropped, created and migrated first, outside the timing.
    """
    from loyalty.demo import demo_seed

    database_recreate()
    seconds, rows = timed(lambda: demo_seed(
        members=options.members, orders_per_member=ORDERS_PER_MEMBER, seed=SEED))
    # Statistics and visibility maps as autovacuum would leave them on a live database, so the
    # planner sees the real sizes and can use index-only scans.
    from django.db import connection

    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    seed_marker_write({"members": options.members, "orders_per_member": ORDERS_PER_MEMBER,
                       "seed": SEED})
    total = sum(rows.values())
    return Measured(options.members, total / seconds, 1,
                    {"rows": rows, "seconds": round(seconds, 3)})


def seeded_database(options: Options) -> None:
    """Make sure the bench database holds at least `--members` seeded members.

    A database seeded before with as many members or more is kept (and migrated, in case the
    schema moved on); otherwise it is seeded now, and that seed is not reported.
    """
    marker = seed_marker_read()
    if marker and marker.get("members", 0) >= options.members:
        call_command("migrate", interactive=False, verbosity=0)
        return
    print(f"bench: seeding {options.members} members first (not reported)", file=sys.stderr)
    seed_members(options)
