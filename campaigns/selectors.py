"""Queries that read target groups: their members, size, reachability and a sample."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Max, Min, QuerySet

from campaigns.models import TargetGroup
from campaigns.rules import rules_members
from members.models import Channel, Member
from members.selectors import member_reachable

SAMPLE_FIELDS = ("id", "external_id", "first_name", "last_name", "email", "phone", "city",
                 "language")


def target_group_members(*, target_group: TargetGroup) -> QuerySet[Member]:
    """The members a target group selects, as one lazily evaluated queryset."""
    return rules_members(target_group.rules, target_group_id=target_group.pk)


def target_group_size(*, target_group: TargetGroup) -> int:
    return members_count(target_group_members(target_group=target_group))


def members_count(members: QuerySet[Member]) -> int:
    """How many members a queryset selects, counted in parts on every core for a large table.

    PostgreSQL 15 keeps a query with correlated subplans (the per-member purchase probes) off
    its parallel workers, so one count uses one core; cut by member id into ranges counted at
    once on their own connections, it uses them all (1M members on 2 cores: about half the
    time). Small tables, and SQLite, count in one query.
    """
    return sum(_in_parts(members, lambda part: part.count()))


def _in_parts(members: QuerySet[Member], run: Callable[[QuerySet[Member]], Any]) -> list[Any]:
    """run() over ranges of member ids at once, each in a thread with its own connection and
    statement timeout (the caller's budget, when it set one); [run(members)] when not worth
    it."""
    workers = settings.ENGAGE_SEGMENT_COUNT_WORKERS
    if connection.vendor != "postgresql" or workers < 2:
        return [run(members)]
    bounds = Member.objects.aggregate(first=Min("pk"), last=Max("pk"))
    first, last = bounds["first"] or 0, bounds["last"] or 0
    if last - first + 1 < settings.ENGAGE_SEGMENT_SPLIT_MIN:
        return [run(members)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        timeout = cursor.fetchone()[0]
    step = (last - first) // workers + 1
    ranges = [(low, min(low + step - 1, last)) for low in range(first, last + 1, step)]

    def part(bounds: tuple[int, int]) -> Any:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
                return run(members.filter(pk__range=bounds))
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        return list(pool.map(part, ranges))


@dataclass
class AudiencePreview:
    """What the marketer sees before saving: how many, how many reachable where, and who."""

    size: int
    reachable: dict[str, int]
    estimated: bool = False  # True: PostgreSQL's planner estimate, the count ran out of time
    sample: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "estimated": self.estimated, "reachable": self.reachable,
                "sample": self.sample}


def _planner_estimate(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def _within_budget(run: Any, estimate: Any) -> tuple[Any, bool]:
    """run() under ENGAGE_SEGMENT_COUNT_TIMEOUT on PostgreSQL; estimate() if it runs out.

    SQLite (the demo) has no statement timeout; its counts are always exact.
    """
    if connection.vendor != "postgresql":
        return run(), False
    # A larger work_mem was tried for these counts and measured slower: with room for them the
    # planner picks hash plans over every order line instead of per-member probes.
    timeout_ms = int(settings.ENGAGE_SEGMENT_COUNT_TIMEOUT * 1000)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                               [str(timeout_ms)])
            return run(), False
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) != "57014":  # query_canceled
            raise
    return estimate(), True


def audience_preview(*, tree: Any, target_group_id: int | None = None,
                     sample_size: int = 10) -> AudiencePreview:
    """Size, reachable count per channel and a sample of the members a tree selects, without
    saving anything; raises ValidationError naming the bad paths of an invalid tree."""
    members = rules_members(tree, target_group_id=target_group_id).order_by()
    size, estimated = _within_budget(lambda: members_count(members),
                                     lambda: _planner_estimate(members))
    channels = Channel.values

    def reachable_counts() -> dict[str, int]:
        parts = _in_parts(members, lambda part: part.aggregate(**{
            channel: Count("pk", filter=member_reachable(channel=channel))
            for channel in channels}))
        return {channel: sum(counts[channel] for counts in parts) for channel in channels}

    def reachable_estimates() -> dict[str, int]:
        return {channel: _planner_estimate(members.filter(member_reachable(channel=channel)))
                for channel in channels}

    reachable, reachable_estimated = _within_budget(reachable_counts, reachable_estimates)
    sample = list(members.order_by("pk").values(*SAMPLE_FIELDS)[:sample_size])
    return AudiencePreview(size=size, reachable=reachable,
                           estimated=estimated or reachable_estimated, sample=sample)
