"""The messaging calendar: which mailings go out on each day, to how many members, and who would
get two or more of them that day.

Days are dates in the program's time zone. A mailing is on a day when:
- it is frozen (sending, paused, completed, cancelled, failed): its messages say so, each on the
  day it was sent, or today for one still waiting to go (test sends and messages that never
  went out, such as skipped or cancelled ones, are on no day);
- it is scheduled, or preparing: on the day of its scheduled time (or start), to the members
  of its audience who are reachable on its channel now;
- it is recurring: on each day of its rule's coming occurrences, to the same reachable
  audience (runs already made are mailings of their own).

Each day with a mailing costs one SQL statement that unions the day's recipients (message
rows for frozen mailings, the audience query for the others) and counts, set-based, each
mailing's members, the members in two or more, and the members of every pair.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import DateTimeField, F, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest, TruncDate
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services.audiences import mailing_audience
from communications.services.schedules import recurrence_rule
from members.selectors import member_reachable

State = Mailing.State
Status = Message.Status

MAX_CALENDAR_DAYS = 92
FROZEN_STATES = (State.SENDING, State.PAUSED, State.COMPLETED, State.CANCELLED, State.FAILED)
# Only these still send their waiting messages (a failed mailing's never go).
STILL_SENDING = (State.SENDING, State.PAUSED)
# Messages that still go out: counted on the day they are due (today at the earliest).
WAITING = (Status.CREATED, Status.QUEUED, Status.SENDING)


@dataclass
class CalendarMailing:
    id: int
    name: str
    state: str
    channel: str | None
    # "messages": counted from its frozen messages; "audience": from who it would go to now.
    source: str
    # Send times that day (a recurring mailing may go out more than once a day).
    times: list[datetime]
    recurring_parent_id: int | None = None
    planned_run: bool = False  # an occurrence of a recurring mailing, not yet a mailing
    members: int = 0
    error: str = ""  # why its audience could not be read (members then 0)


@dataclass
class CalendarOverlap:
    mailings: tuple[int, int]
    members: int


@dataclass
class CalendarDay:
    date: date
    mailings: list[CalendarMailing] = field(default_factory=list)
    members: int = 0  # distinct members who get anything that day
    overlap: int = 0  # members who get two or more messages that day
    pairs: list[CalendarOverlap] = field(default_factory=list)


@dataclass
class MessagingCalendar:
    start: date
    end: date
    days: list[CalendarDay]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calendar_range_errors(*, start: date, end: date) -> dict[str, str]:
    if end < start:
        return {"end": "must not be before the start"}
    if (end - start).days + 1 > MAX_CALENDAR_DAYS:
        return {"end": f"a calendar covers at most {MAX_CALENDAR_DAYS} days"}
    return {}


def messaging_calendar(*, start: date, end: date,
                       now: datetime | None = None) -> MessagingCalendar:
    """Day by day from `start` to `end` (inclusive): the mailings that go out, their members and
    the overlap between them. ValidationError naming `end` for a bad range."""
    errors = calendar_range_errors(start=start, end=end)
    if errors:
        raise ValidationError(errors)
    now = now or timezone.now()
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, time.min, tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    days = {start + timedelta(days=n): CalendarDay(date=start + timedelta(days=n))
            for n in range((end - start).days + 1)}

    candidates = list(
        Mailing.objects.select_related("template", "target_group", "static_list")
        .filter(_in_range(since=since, until=until, now=now)).order_by("scheduled_at", "pk")
    )
    entries: dict[date, list[tuple[CalendarMailing, Mailing]]] = defaultdict(list)
    frozen = {m.pk: m for m in candidates if m.state in FROZEN_STATES}
    sending = [m.pk for m in frozen.values() if m.state in STILL_SENDING]
    for day, mailing_id, sent_times in _frozen_days(mailing_ids=list(frozen), sending=sending,
                                                    since=since, until=until, now=now):
        mailing = frozen[mailing_id]
        entries[day].append((_entry(mailing, source="messages", times=sent_times), mailing))
    for mailing in candidates:
        if mailing.state in FROZEN_STATES:
            continue
        for day, times in _audience_days(mailing, since=since, until=until, zone=zone).items():
            if day in days:
                entries[day].append((_entry(mailing, source="audience", times=times), mailing))

    for day, day_entries in sorted(entries.items()):
        _day_count(days[day], day_entries, sending=sending, now=now)
    return MessagingCalendar(start=start, end=end, days=list(days.values()))


def _in_range(*, since: datetime, until: datetime, now: datetime) -> Q:
    scheduled = Q(state__in=(State.SCHEDULED, State.PREPARING), scheduled_at__lt=until,
                  scheduled_at__gte=since)
    preparing = Q(state=State.PREPARING, started_at__lt=until, started_at__gte=since)
    recurring = Q(state=State.RECURRING, scheduled_at__lt=until)
    # Its messages are sent between its start and its end; waiting ones count today.
    frozen = Q(state__in=FROZEN_STATES, started_at__lt=until) & (
        Q(completed_at__isnull=True) | Q(completed_at__gte=since))
    return scheduled | preparing | recurring | frozen


def _entry(mailing: Mailing, *, source: str, times: list[datetime]) -> CalendarMailing:
    return CalendarMailing(
        id=mailing.pk, name=mailing.name, state=mailing.state, channel=mailing.channel,
        source=source, times=times, recurring_parent_id=mailing.recurring_parent_id,
        planned_run=mailing.state == State.RECURRING)


def _message_day(*, now: datetime) -> TruncDate:
    """The day a message hits its member: the day it was sent, or when it is due (not before
    today) for one still waiting."""
    due = Greatest(Coalesce(F("not_before"), Value(now)), Value(now),
                   output_field=DateTimeField())
    return TruncDate(Coalesce(F("sent_at"), due, output_field=DateTimeField()))


def _recipient_messages(*, mailing_ids: list[int], sending: list[int]) -> QuerySet[Message]:
    """Messages that went out, or will (waiting in a mailing still sending): not test sends,
    not skipped or cancelled."""
    return (Message.objects.filter(mailing_id__in=mailing_ids, is_test=False,
                                   member_id__isnull=False)
            .filter(Q(sent_at__isnull=False)
                    | Q(status__in=WAITING, mailing_id__in=sending))
            .order_by())


def _frozen_days(*, mailing_ids: list[int], sending: list[int], since: datetime,
                 until: datetime, now: datetime) -> list[tuple[date, int, list[datetime]]]:
    """(day, mailing, [first send that day]) of the frozen mailings, in one grouped query."""
    if not mailing_ids:
        return []
    start, end = timezone.localdate(since), timezone.localdate(until - timedelta(seconds=1))
    rows = (_recipient_messages(mailing_ids=mailing_ids, sending=sending)
            .annotate(day=_message_day(now=now))
            .filter(day__gte=start, day__lte=end)
            .values("day", "mailing_id").annotate(first=Min("sent_at")).order_by("day"))
    return [(row["day"], row["mailing_id"], [row["first"]] if row["first"] else [])
            for row in rows]


def _audience_days(mailing: Mailing, *, since: datetime, until: datetime,
                   zone: Any) -> dict[date, list[datetime]]:
    """{day: [send times]} of a mailing not frozen yet: its scheduled time (or start when
    preparing), or each coming occurrence of a recurring one."""
    if mailing.state == State.RECURRING:
        if mailing.scheduled_at is None or not mailing.recurrence:
            return {}
        try:
            rule = recurrence_rule(mailing.recurrence, start=mailing.scheduled_at)
        except ValidationError:
            return {}
        naive = [moment.astimezone(zone).replace(tzinfo=None) for moment in (since, until)]
        days: dict[date, list[datetime]] = defaultdict(list)
        for occurrence in rule.between(naive[0], naive[1] - timedelta(microseconds=1),
                                       inc=True):
            days[occurrence.date()].append(occurrence.replace(tzinfo=zone))
        return days
    moment = (mailing.started_at if mailing.state == State.PREPARING and mailing.started_at
              else mailing.scheduled_at)
    if moment is None:
        return {}
    return {timezone.localdate(moment): [moment]}


def _audience_recipients(mailing: Mailing) -> QuerySet[Any]:
    """Who a mailing not yet frozen would go to: its audience, reachable on its channel."""
    members = mailing_audience(mailing=mailing).order_by()
    if mailing.channel:
        members = members.filter(member_reachable(channel=mailing.channel))
    return members


def _day_count(day: CalendarDay, entries: list[tuple[CalendarMailing, Mailing]], *,
               sending: list[int], now: datetime) -> None:
    """Fill the day's member counts and overlaps, in one statement.

    Every mailing's recipients that day become (key, member, sends) rows of one CTE, which
    PostgreSQL materializes once (it is read three times): members per mailing, members with
    two or more sends, and members shared by each pair. A recurring mailing going out twice
    that day sends twice to the same members, so `sends` is its number of runs.
    """
    qn = connection.ops.quote_name
    parts: list[str] = []
    params: list[Any] = []
    frozen_ids = [entry.id for entry, _ in entries if entry.source == "messages"]
    if frozen_ids:
        frozen = (_recipient_messages(mailing_ids=frozen_ids, sending=sending)
                  .annotate(_day=_message_day(now=now)).filter(_day=day.date)
                  .annotate(_key=F("mailing_id"), _member=F("member_id"), _sends=Value(1))
                  .values_list("_key", "_member", "_sends"))
        _add(parts, params, frozen)
    for entry, mailing in entries:
        if entry.source != "audience":
            continue
        try:
            recipients = _audience_recipients(mailing)
        except ValidationError as error:  # a target group whose rules no longer hold
            entry.error = "; ".join(error.messages)
            continue
        audience = (recipients
                    .annotate(_key=Value(mailing.pk), _member=F("pk"),
                              _sends=Value(len(entry.times) or 1))
                    .values_list("_key", "_member", "_sends"))
        _add(parts, params, audience)
    day.mailings = [entry for entry, _ in entries]
    if not parts:
        return
    hits = " UNION ALL ".join(
        f"SELECT DISTINCT {qn('_key')}::bigint, {qn('_member')}::bigint, "
        f"{qn('_sends')}::integer FROM ({sql}) part{n}"
        for n, sql in enumerate(parts))
    sql = (
        f"WITH hit (mailing_id, member_id, sends) AS ({hits}), "
        f"per_member AS (SELECT member_id, SUM(sends) AS sends FROM hit GROUP BY member_id) "
        f"SELECT 'mailing', mailing_id, NULL::bigint, COUNT(*) FROM hit GROUP BY mailing_id "
        f"UNION ALL SELECT 'members', NULL, NULL, COUNT(*) FROM per_member "
        f"UNION ALL SELECT 'overlap', NULL, NULL, COUNT(*) FROM per_member WHERE sends >= 2 "
        f"UNION ALL SELECT 'pair', a.mailing_id, b.mailing_id, COUNT(*) FROM hit a "
        f"JOIN hit b ON a.member_id = b.member_id AND a.mailing_id < b.mailing_id "
        f"GROUP BY a.mailing_id, b.mailing_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    members = {entry.id: entry for entry, _ in entries}
    for kind, first, second, count in rows:
        if kind == "mailing":
            members[first].members = count
        elif kind == "members":
            day.members = count
        elif kind == "overlap":
            day.overlap = count
        else:
            day.pairs.append(CalendarOverlap(mailings=(first, second), members=count))
    day.pairs.sort(key=lambda pair: (-pair.members, pair.mailings))


def _add(parts: list[str], params: list[Any], queryset: QuerySet[Any]) -> None:
    sql, more = queryset.query.sql_with_params()
    parts.append(sql)
    params.extend(more)
