"""audience_snapshot: freezing a whole-membership audience into message rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.utils import timezone

from bench.database import broker_flush
from bench.mailings import mailing_create, mailings_clear
from bench.options import Options
from bench.results import Measured, median_of, timed
from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from members.models import Member

WHAT = ("mailing_prepare of a scheduled email mailing to every member: the INSERT ... SELECT "
        "snapshot, the state change and the on-commit enqueue of its batch tasks (purged, never "
        "run); insert_s is the INSERT statement alone")


class _InsertTimer:
    """A query wrapper (Django's execute_wrapper) timing the INSERT into the message table."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._marker = f"INSERT INTO {connection.ops.quote_name(Message._meta.db_table)}"

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool,
                 context: dict[str, Any]) -> Any:
        if not sql.startswith(self._marker):
            return execute(sql, params, many, context)
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start


def audience_snapshot(options: Options) -> Measured:
    """Seconds for `mailing_prepare` to freeze every member into one message row each.

    No worker runs: the batch tasks it enqueues on commit are purged from the bench broker, and
    the messages are removed between runs.
    """
    members = Member.objects.count()
    rows: list[int] = []
    inserts: list[float] = []

    def measure() -> float:
        mailings_clear()
        mailing = mailing_create(name="bench audience_snapshot", rules=[],
                                 gateway_settings={"host": "127.0.0.1", "port": 9})
        mailing_schedule(mailing=mailing, at=timezone.now())
        insert = _InsertTimer()
        try:
            with connection.execute_wrapper(insert):
                seconds, written = timed(lambda: mailing_prepare(mailing_id=mailing.pk))
        finally:
            broker_flush()
        rows.append(written)
        inserts.append(round(insert.seconds, 3))
        if written != members:
            raise RuntimeError(f"snapshot wrote {written} rows for {members} members")
        return seconds

    try:
        value, per_run = median_of(options.runs, measure)
    finally:
        mailings_clear()
    return Measured(members, value, options.runs,
                    {"what": WHAT, "rows": rows[-1], "per_run": per_run, "insert_s": inserts})
