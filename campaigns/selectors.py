"""Queries that read target groups (their members, size, reachability and a sample) and the
offers (promo content) a member sees."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, FloatField, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from campaigns.models import PromoContent, TargetGroup
from campaigns.rules import rules_compile, rules_members
from config.sql import ModelRows, prepared_cursor
from members.models import Channel, Member
from members.selectors import member_reachable

logger = logging.getLogger(__name__)

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


# --- promo content ---------------------------------------------------------------------------

# A member sees at most this many offers at once, highest priority first: the app's list and
# home call are bounded, so they need no pagination.
OFFERS_SHOWN_MAX = 20
# Live offers considered per call; past this many in one placement the lowest priorities are
# not looked at (each distinct audience among them is one EXISTS in the membership query).
OFFERS_CANDIDATES_MAX = 200


# Written out rather than a queryset: this runs on every home call, where the ORM's compile
# (and then a RawQuerySet's per-query setup) cost more CPU than the query.
_OFFER_ROWS = ModelRows(PromoContent)


def offers_shown(*, member: Member, placement: str | None = None,
                 now: dt.datetime | None = None, offer_id: int | None = None,
                 ) -> list[PromoContent]:
    """The offers `member` sees now in `placement` ("account" or "app"; None: either), highest
    priority first, at most OFFERS_SHOWN_MAX; with `offer_id`, that offer if shown, or [].

    Two queries whatever the number of offers and audiences: the live candidates with their
    audiences' rules, then, only when some candidate has an audience, one query answering
    for every distinct audience at once whether this member is in it.
    """
    at = now or timezone.now()
    offers, groups = PromoContent._meta.db_table, TargetGroup._meta.db_table
    sql = (f"SELECT {_OFFER_ROWS.select('o')}, g.updated_at, g.rules::text FROM {offers} o "
           f"LEFT JOIN {groups} g ON g.id = o.target_group_id "
           f"WHERE o.is_active AND o.shown_from <= %s AND o.ends_at > %s")
    params: list[Any] = [at, at]
    if placement is not None:
        sql += " AND o.placement = ANY(%s)"
        params.append([placement, PromoContent.Placement.BOTH.value])
    if offer_id is not None:
        sql += " AND o.id = %s"
        params.append(offer_id)
    sql += f" ORDER BY o.priority DESC, o.starts_at, o.id LIMIT {OFFERS_CANDIDATES_MAX}"
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    live: list[PromoContent] = []
    # Id and last change are what `_audience_sql` reads; the rules (as text) are decoded only
    # for the audiences it will compile.
    audiences: dict[int, TargetGroup] = {}
    for row in rows:
        offer = _OFFER_ROWS.instance(row)
        live.append(offer)
        if offer.target_group_id is not None and offer.target_group_id not in audiences:
            updated_at, rules = row[len(_OFFER_ROWS.columns):]
            group = TargetGroup.from_db(None, ["id", "updated_at"],
                                        [offer.target_group_id, updated_at])
            if now is not None or not _audience_sql_fresh(group):
                group.rules = json.loads(rules)
            audiences[group.pk] = group
    # `now` as given: None lets the audiences' compiled SQL come from the cache.
    inside = target_groups_holding(member_id=member.pk, target_groups=audiences.values(),
                                   now=now)
    return [offer for offer in live
            if offer.target_group_id is None or offer.target_group_id in inside
            ][:OFFERS_SHOWN_MAX]


def offer_shown(*, member: Member, offer_id: int, placement: str | None = None,
                now: dt.datetime | None = None) -> PromoContent | None:
    """The offer if `member` sees it now (in `placement`, or in either), else None."""
    shown = offers_shown(member=member, placement=placement, now=now, offer_id=offer_id)
    return shown[0] if shown else None


def target_groups_holding(*, member_id: int, target_groups: Iterable[TargetGroup],
                          now: dt.datetime | None = None) -> set[int]:
    """The ids of the groups the member is in, in one query: each group's rules as an EXISTS
    over this member's row alone, so every condition is probed for one member, not the table.

    Rules that no longer compile (a list or store they name was deleted since) select nobody.
    At the current moment (`now` None) each group's SQL comes from `_audience_sql`'s cache.
    """
    checks: list[str] = []
    params: list[Any] = []
    ids: list[int] = []
    for group in target_groups:
        compiled = _audience_sql(group) if now is None else _audience_sql_compile(group, now)
        if compiled is None:
            continue
        sql, group_params = compiled
        # A plain subquery in FROM is flattened by the planner, so `audience.id = member` probes
        # the member's primary key and the rules' own subqueries run for that row only.
        checks.append(f"EXISTS (SELECT 1 FROM ({sql}) audience WHERE audience.id = %s)")
        params += [*group_params, member_id]
        ids.append(group.pk)
    if not checks:
        return set()
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(checks)}", params)
        row = cursor.fetchone()
    return {pk for pk, inside in zip(ids, row, strict=True) if inside}


# Each audience's compiled SQL per process, for the offers of the home call: compiling a rule
# tree and then Django's SQL for it costs milliseconds of Python, several times a group's own
# probe of one member. Keyed by the group's last change, so an edited group is compiled anew at
# once; kept AUDIENCE_SQL_TTL seconds, which is as late as a relative date in a rule ("in the
# last 30 days") or a change to a group it refers to can be.
AUDIENCE_SQL_TTL = 60.0
_AUDIENCE_SQL: dict[tuple[int, dt.datetime], tuple[float, tuple[str, list[Any]] | None]] = {}


def _audience_sql_fresh(group: TargetGroup) -> bool:
    cached = _AUDIENCE_SQL.get((group.pk, group.updated_at))
    return cached is not None and time.monotonic() - cached[0] < AUDIENCE_SQL_TTL


def _audience_sql(group: TargetGroup) -> tuple[str, list[Any]] | None:
    key = (group.pk, group.updated_at)
    if _audience_sql_fresh(group):
        return _AUDIENCE_SQL[key][1]
    compiled = _audience_sql_compile(group, timezone.now())
    if len(_AUDIENCE_SQL) > 1000:  # only edited or deleted groups' entries pile up
        _AUDIENCE_SQL.clear()
    _AUDIENCE_SQL[key] = (time.monotonic(), compiled)
    return compiled


def _audience_sql_compile(group: TargetGroup, now: dt.datetime) -> tuple[str, list[Any]] | None:
    """The SQL selecting the group's members' ids, or None for rules that no longer compile."""
    try:
        rules = rules_compile(group.rules, now=now, target_group_id=group.pk)
    except ValidationError as error:
        logger.warning("target group %s has invalid rules, so its offers show to nobody: %s",
                       group.pk, error.messages)
        return None
    sql, params = Member.objects.filter(rules).order_by().values("id").query.sql_with_params()
    return sql, list(params)


def offer_status_q(status: str, *, now: dt.datetime | None = None) -> Q:
    """Offers in a status: scheduled (not shown yet), showing, ended, or off (switched off
    before its end)."""
    now = now or timezone.now()
    return {
        "scheduled": Q(is_active=True, shown_from__gt=now),
        "showing": Q(is_active=True, shown_from__lte=now, ends_at__gt=now),
        "ended": Q(ends_at__lte=now),
        "off": Q(is_active=False, ends_at__gt=now),
    }[status]


def offer_status(offer: PromoContent, *, now: dt.datetime | None = None) -> str:
    now = now or timezone.now()
    if offer.ends_at <= now:
        return "ended"
    if not offer.is_active:
        return "off"
    return "showing" if offer.shown_from <= now else "scheduled"


def offers_with_counts(offers: QuerySet[PromoContent]) -> QuerySet[PromoContent]:
    """Offers annotated with their total `views`, `clicks` and `click_rate` (clicks per view,
    None before the first view)."""
    counted = offers.annotate(views=Coalesce(Sum("days__views"), 0),
                              clicks=Coalesce(Sum("days__clicks"), 0))
    return counted.annotate(click_rate=Cast("clicks", FloatField()) / NullIf(F("views"), 0))


@dataclass
class OfferPreview:
    """The account page's offers as one member sees them at a moment, for the admin preview."""

    member: Member | None
    at: dt.datetime
    offers: list[PromoContent] = field(default_factory=list)
    shown: bool = False  # the previewed offer is among them
    why_not: str = ""  # when it is not: the first reason found
    problem: str = ""  # no member to preview as


def offer_preview(*, offer: PromoContent, target_group: TargetGroup | None = None,
                  member_id: int | None = None, at: dt.datetime | None = None,
                  ) -> OfferPreview:
    """What a member sees on the account's offers page at `at` (now by default): the member
    typed in, else the first member of `target_group`, else of the offer's own audience,
    else the first member at all; and whether `offer` is among what they see, or why not."""
    at = at or timezone.now()
    group = target_group or offer.target_group
    if member_id is not None:
        member = Member.objects.filter(pk=member_id).first()
        problem = f"There is no member with id {member_id}."
    else:
        members = target_group_members(target_group=group) if group else Member.objects.all()
        member = members.order_by("pk").first()
        problem = f"The target group “{group}” has no members." if group else "No members yet."
    if member is None:
        return OfferPreview(member=None, at=at, problem=problem)
    offers = offers_shown(member=member, placement=PromoContent.Placement.ACCOUNT, now=at)
    preview = OfferPreview(member=member, at=at, offers=offers,
                           shown=any(shown.pk == offer.pk for shown in offers))
    if not preview.shown:
        preview.why_not = _offer_hidden_because(offer, member=member, at=at)
    return preview


def _offer_hidden_because(offer: PromoContent, *, member: Member, at: dt.datetime) -> str:
    if offer.placement == PromoContent.Placement.APP:
        return "it is shown in the app only."
    if not offer.is_active:
        return "it is switched off."
    if at < offer.shown_from:
        return f"it is not shown before {timezone.localtime(offer.shown_from):%Y-%m-%d %H:%M}."
    if at >= offer.ends_at:
        return "it has ended."
    if offer.target_group_id is not None and offer.target_group_id not in target_groups_holding(
            member_id=member.pk, target_groups=[offer.target_group], now=at):
        return f"the member is not in its audience “{offer.target_group}”."
    return f"{OFFERS_SHOWN_MAX} offers of higher priority are shown before it."
