"""Use cases that change target groups and static lists (freeze, upload, watch, re-evaluate)
and offers (save, count views and clicks)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from campaigns.models import (
    PromoContent,
    PromoContentDay,
    StaticList,
    StaticListMember,
    TargetGroup,
    TargetGroupMembership,
)
from campaigns.selectors import target_group_members
from loyalty.models import Event
from loyalty.services import events_record
from members.models import Member

CHUNK = 10_000
MAX_UPLOAD_ROWS = 5_000_000


def _insert_select(*, table_model: Any, columns: Sequence[str], select_sql: str,
                   params: Sequence[Any]) -> int:
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(table_model._meta.db_table)} ({', '.join(map(qn, columns))}) "
            f"{select_sql}", list(params))
        return cursor.rowcount


# --- static lists ---------------------------------------------------------------------------

@transaction.atomic
def target_group_freeze(*, target_group: TargetGroup, name: str = "",
                        now: dt.datetime | None = None) -> StaticList:
    """Freeze the group's current members into a new static list, in one INSERT … SELECT."""
    now = now or timezone.now()
    name = name.strip() or f"{target_group.name} at {timezone.localtime(now):%Y-%m-%d %H:%M}"
    if StaticList.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a static list named {name!r} exists already"})
    static_list = StaticList.objects.create(
        name=name, source=StaticList.Source.FROZEN, frozen_from=target_group, taken_at=now,
        description=f"Members of {target_group.name!r} when frozen.")
    members = target_group_members(target_group=target_group).order_by().values("pk")
    sql, params = members.query.sql_with_params()
    static_list.size = _insert_select(
        table_model=StaticListMember, columns=["static_list_id", "member_id"],
        select_sql=f"SELECT %s, picked.pk FROM ({sql}) picked", params=[static_list.pk, *params])
    static_list.save(update_fields=["size"])
    return static_list


def static_list_ids_read(upload: bytes | str) -> list[str]:
    """External ids from an uploaded CSV: the `external_id` column, or the first column when
    there is no such header. Blank lines are skipped; raises ValidationError on a bad file."""
    if isinstance(upload, bytes):
        try:
            upload = upload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError({"file": "is not UTF-8 text"}) from exc
    rows = csv.reader(io.StringIO(upload))
    header = next(rows, None)
    if header is None:
        raise ValidationError({"file": "is empty"})
    names = [cell.strip().lower() for cell in header]
    column = names.index("external_id") if "external_id" in names else 0
    ids = [] if "external_id" in names else [header[0].strip()] if header[0].strip() else []
    for number, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if column >= len(row):
            raise ValidationError({"file": f"line {number} has no column {column + 1}"})
        ids.append(row[column].strip())
        if len(ids) > MAX_UPLOAD_ROWS:
            raise ValidationError({"file": f"holds more than {MAX_UPLOAD_ROWS:,} rows"})
    return ids


@transaction.atomic
def static_list_create(*, name: str, member_ids: Iterable[int] = (),
                       external_ids: Iterable[str] = (), description: str = "",
                       now: dt.datetime | None = None) -> StaticList:
    """A static list of the given members (by id or by external id); unknown ones are refused,
    named, and nothing is written."""
    name = name.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "is required"
    elif StaticList.objects.filter(name=name).exists():
        errors["name"] = f"a static list named {name!r} exists already"
    member_ids, external_ids = set(member_ids), set(external_ids)
    if not member_ids and not external_ids:
        errors["members"] = "give member ids or external ids"
    found: set[int] = set()
    for ids, column, field in ((sorted(member_ids), "pk", "member_ids"),
                               (sorted(external_ids), "external_id", "external_ids")):
        known: dict[Any, int] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            known.update(Member.objects.filter(**{f"{column}__in": chunk})
                         .values_list(column, "pk"))
        unknown = [value for value in ids if value not in known]
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (" …" if len(unknown) > 5 else "")
            errors[field] = f"{len(unknown):,} unknown: {shown}"
        found.update(known.values())
    if errors:
        raise ValidationError(errors)
    static_list = StaticList.objects.create(name=name, description=description,
                                            taken_at=now or timezone.now(), size=len(found))
    ordered = sorted(found)
    for start in range(0, len(ordered), CHUNK):
        StaticListMember.objects.bulk_create(
            [StaticListMember(static_list=static_list, member_id=pk)
             for pk in ordered[start:start + CHUNK]])
    return static_list


# --- watched groups -------------------------------------------------------------------------

@transaction.atomic
def target_group_watch(*, target_group: TargetGroup, now: dt.datetime | None = None
                       ) -> TargetGroup:
    """Start keeping the group's membership current. The members it holds now become the
    baseline, without events: only later changes enter or leave."""
    group = TargetGroup.objects.select_for_update().get(pk=target_group.pk)
    if group.is_watched:
        return group
    now = now or timezone.now()
    group.is_watched, group.watched_since = True, now
    group.save(update_fields=["is_watched", "watched_since"])
    members = target_group_members(target_group=group).order_by().values("pk")
    sql, params = members.query.sql_with_params()
    _insert_select(table_model=TargetGroupMembership,
                   columns=["target_group_id", "member_id", "entered_at"],
                   select_sql=f"SELECT %s, picked.pk, %s FROM ({sql}) picked",
                   params=[group.pk, now, *params])
    return group


@transaction.atomic
def target_group_unwatch(*, target_group: TargetGroup) -> TargetGroup:
    group = TargetGroup.objects.select_for_update().get(pk=target_group.pk)
    group.is_watched, group.watched_since = False, None
    group.save(update_fields=["is_watched", "watched_since"])
    TargetGroupMembership.objects.filter(target_group=group).delete()
    return group


def target_groups_reevaluate(*, member_ids: Sequence[int] | None = None,
                             now: dt.datetime | None = None) -> dict[str, int]:
    """Bring every watched group's membership up to date for these members (all when None)
    and record TARGET_GROUP_ENTERED / LEFT events for the differences.

    Only the given members are evaluated: the group's query gets `id = ANY(ids)`, so a change to
    one member costs one indexed lookup per group, not a rebuild. Each group is locked while it
    is evaluated, so two workers never record the same entry twice.
    """
    totals = {"entered": 0, "left": 0}
    for group_id in TargetGroup.objects.filter(is_watched=True).values_list("pk", flat=True):
        entered, left = target_group_reevaluate(target_group_id=group_id, member_ids=member_ids,
                                                now=now)
        totals["entered"] += entered
        totals["left"] += left
    return totals


@transaction.atomic
def target_group_reevaluate(*, target_group_id: int, member_ids: Sequence[int] | None = None,
                            now: dt.datetime | None = None) -> tuple[int, int]:
    now = now or timezone.now()
    group = (TargetGroup.objects.select_for_update()
             .filter(pk=target_group_id, is_watched=True).first())
    if group is None:
        return 0, 0
    matching = target_group_members(target_group=group).order_by()
    current = TargetGroupMembership.objects.filter(target_group=group)
    if member_ids is not None:
        matching = matching.filter(pk__in=list(member_ids))
        current = current.filter(member_id__in=list(member_ids))
    member_in_group = TargetGroupMembership.objects.filter(target_group=group,
                                                           member=OuterRef("pk"))
    entered = list(matching.filter(~Exists(member_in_group)).values_list("pk", flat=True))
    left = list(current.exclude(member__in=matching.values("pk"))
                .values_list("member_id", flat=True))
    for start in range(0, len(entered), CHUNK):
        TargetGroupMembership.objects.bulk_create([
            TargetGroupMembership(target_group=group, member_id=pk, entered_at=now)
            for pk in entered[start:start + CHUNK]])
    for start in range(0, len(left), CHUNK):
        current.filter(member_id__in=left[start:start + CHUNK]).delete()
    payload = {"target_group": group.pk, "name": group.name}
    events_record(type=Event.Type.TARGET_GROUP_ENTERED, occurred_at=now,
                  entries=((pk, payload) for pk in entered))
    events_record(type=Event.Type.TARGET_GROUP_LEFT, occurred_at=now,
                  entries=((pk, payload) for pk in left))
    return len(entered), len(left)


@transaction.atomic
def static_list_of_addresses(*, name: str, field: str, addresses: Sequence[str],
                             report: dict[str, Any], description: str = "",
                             now: dt.datetime | None = None) -> StaticList:
    """A static list of the members whose `field` (email or phone) is one of `addresses`,
    written a chunk of addresses per INSERT … SELECT; `report` keeps what the uploaded file
    held beside it. Addresses no member has add nothing: there is no consent for them."""
    if StaticList.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a static list named {name!r} exists already"})
    static_list = StaticList.objects.create(
        name=name, source=StaticList.Source.ADDRESS_LIST, taken_at=now or timezone.now(),
        description=description, address_report=report)
    size = 0
    for start in range(0, len(addresses), CHUNK):
        members = (Member.objects.filter(**{f"{field}__in": addresses[start:start + CHUNK]})
                   .order_by().values("pk"))
        sql, params = members.query.sql_with_params()
        size += _insert_select(
            table_model=StaticListMember, columns=["static_list_id", "member_id"],
            select_sql=f"SELECT %s, matched.pk FROM ({sql}) matched",
            params=[static_list.pk, *params])
    static_list.size = size
    static_list.save(update_fields=["size"])
    return static_list


# --- promo content ---------------------------------------------------------------------------

OFFER_COUNTERS = ("views", "clicks")


@transaction.atomic
def promo_content_save(*, offer: PromoContent) -> PromoContent:
    """Create or change an offer: validated with field-named errors, its display window's start
    (`shown_from`) derived from the start and the days it is announced before it."""
    if offer.starts_at is not None:
        offer.shown_from = offer.starts_at - dt.timedelta(days=offer.show_days_before or 0)
    offer.full_clean(exclude=["shown_from"])
    offer.save()
    return offer


def promo_content_count(*, offer_ids: Iterable[int], counter: str,
                        on: dt.date | None = None) -> None:
    """Add one view or one click to each offer's row of the day, in one statement.

    The day's row is created by the first and incremented in place after (INSERT … ON
    CONFLICT, which PostgreSQL and SQLite both speak), so a popular offer costs one row a day,
    however many members look; concurrent counts wait on that row's lock for an instant
    instead of losing an increment. Ids go in sorted, so two multi-offer counts lock rows in
    the same order and never deadlock.
    """
    if counter not in OFFER_COUNTERS:
        raise ValueError(f"counter must be one of {OFFER_COUNTERS}, not {counter!r}")
    ids = sorted(set(offer_ids))
    if not ids:
        return
    day = on or timezone.localdate()
    qn = connection.ops.quote_name
    table, column = qn(PromoContentDay._meta.db_table), qn(counter)
    views, clicks = (1, 0) if counter == "views" else (0, 1)
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (offer_id, day, views, clicks) VALUES {rows} "
            f"ON CONFLICT (offer_id, day) DO UPDATE SET {column} = {table}.{column} + 1",
            [value for pk in ids for value in (pk, day, views, clicks)])
