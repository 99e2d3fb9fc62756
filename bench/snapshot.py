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
from bench.workers import CeleryWorkers
from communications.models import Mailing, Message
from communications.services import mailing_cancel, mailing_prepare, mailing_schedule
from members.models import Member

WHAT = ("mailing_prepare of a scheduled email mailing to every member, until it is sending: the "
        "audience frozen in parts of member ids (INSERT ... SELECT each) by the preparing call "
        "and one real Celery worker (prefork, 1 child) taking the other parts, as on a 2-core "
        "machine; insert_s is the INSERT statements of the preparing call alone")


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
                seconds, _ = timed(lambda: _prepared(mailing))
        finally:
            # Nothing is to be sent: stop the mailing before its batches reach the worker.
            mailing_cancel(mailing=mailing)
            broker_flush()
        written = Message.objects.filter(mailing=mailing).count()
        rows.append(written)
        inserts.append(round(insert.seconds, 3))
        if written != members:
            raise RuntimeError(f"snapshot wrote {written} rows for {members} members")
        return seconds

    try:
        broker_flush()
        with CeleryWorkers(concurrency=1) as workers:
            value, per_run = median_of(options.runs, measure)
            if "Traceback" in workers.log_tail():
                raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    finally:
        mailings_clear()
    return Measured(members, value, options.runs,
                    {"what": WHAT, "rows": rows[-1], "per_run": per_run, "insert_s": inserts})


def _prepared(mailing: Mailing) -> None:
    """Start the mailing and wait until every part of its audience is frozen."""
    mailing_prepare(mailing_id=mailing.pk)
    while Mailing.objects.filter(pk=mailing.pk, state=Mailing.State.PREPARING).exists():
        time.sleep(0.01)
