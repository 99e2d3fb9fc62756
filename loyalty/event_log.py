"""Reading the event log (the outbox): how far a reader may move its position, and which
readers to wake once events commit.

Readers of the log (the webhook relay, communications' triggers) each keep a position, a
`recorded_at` time, and take the events recorded after it. The position must never pass an
event that is still to commit. `recorded_at` is stamped in the writing transaction, so an
uncommitted event is never older than the oldest transaction now open (pg_stat_activity, which
shows the start of other sessions' transactions to the same database role or a superuser:
Engage's processes share one role); a reader moves its position to that time (or now) less a
second for clock skew between the stamping process and the database. Events seen twice on the
way are the reader's to absorb (a unique constraint on what it writes per event).

Readers in apps above `loyalty` register a nudge in EVENT_READERS from their
`AppConfig.ready()`; the ingest calls them after its transaction commits. A nudge only starts
a pass early: each reader also runs on the beat schedule, so a lost nudge loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

CLOCK_MARGIN = timedelta(seconds=1)

# () -> None: ask a worker to read the log now; must not raise (it runs after commit).
EVENT_READERS: list[Callable[[], None]] = []


def event_log_horizon() -> datetime:
    """The latest `recorded_at` no uncommitted event can be stamped at or before."""
    if connection.vendor != "postgresql":
        # SQLite (the embedded default) has one writer at a time.
        return timezone.now() - CLOCK_MARGIN
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT LEAST(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND xact_start IS NOT NULL))")
        (horizon,) = cursor.fetchone()
    return horizon - CLOCK_MARGIN


def event_readers_nudge_after_commit() -> None:
    """Wake every registered reader once the current transaction commits."""
    for nudge in EVENT_READERS:
        transaction.on_commit(nudge)
