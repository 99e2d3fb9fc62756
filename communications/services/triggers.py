"""Triggered messages: a mailing of kind `trigger` sends a message per matching event of the
loyalty event log, or per date occasion (a birthday, a voucher about to expire, a lapse since
the last purchase), through the same pipeline as every mailing.

Life of a trigger mailing: a draft with its `Trigger` row (`trigger_mailing_create`, from the
API; the admin's screen writes the same rows) is activated (`trigger_activate`) and stays
`sending` (`dispatch.mailing_complete_if_done` never completes it) until it is cancelled;
paused, it ignores the events that arrive meanwhile. Its messages are inserted `queued` with
`not_before` = when they are due, so the claim, the compliance screening (consent,
suppression, frequency caps, quiet hours), the batches and the receipts are the mailings' own.
Consent, address and suppression are also decided when the row is inserted, by the audience
snapshot's own select (`snapshots.recipients_select`), so a member who cannot be reached gets
a skipped row with the reason, as in any mailing. The scheduler tick re-dispatches a sending
mailing whose held messages came due (`mailings_tick`, every ENGAGE_REDISPATCH_AFTER), so a
delayed message goes out within a minute or so of its time.

Exactly once per event: a message carries the event it answers (or for a date rule its
occasion key), and (mailing, member, event) / (mailing, member, occasion) are unique, so an
event read twice, or an occasion seen by every hourly tick of its day, inserts one row: each
insert is one `INSERT … SELECT … ON CONFLICT DO NOTHING`.

The event reader (`trigger_events_read`, on the beat schedule and nudged after the ingest
commits, as the webhook relay is) keeps a position per trigger in the log (`read_until`). A
pass takes, per live event trigger, the events recorded after the position that match its
type, its payload conditions (compiled to SQL, `trigger_conditions`) and the mailing's target
group, in one statement; cancels the waiting messages a cancelling event now answers; and moves
the position to the log's horizon (`loyalty.event_log.event_log_horizon`), which never passes
an uncommitted event. A trigger row is locked for its pass, so two workers never read one
trigger at once. Whether a message is cancelled depends only on the events' times, not on when
they were read: a cancelling event that occurred within the delay after the triggering one (and
has the same payload value at `cancel_match`) cancels it, whichever of the two was posted first.

Date rules run hourly in `trigger_dates`, through the same insert; the payload conditions
are checked and compiled to SQL in `trigger_conditions`. The SQL is PostgreSQL's (jsonb paths,
arrays): the embedded SQLite default refuses to activate a trigger mailing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from communications.models import Mailing, Message, MessageStatusChange, Trigger
from communications.services.audiences import AUDIENCE_SOURCES, mailing_audience
from communications.services.dispatch import mailing_dispatch_enqueue
from communications.services.mailings import mailing_content_errors
from communications.services.snapshots import recipient_columns, recipients_select
from communications.services.statuses import StatusChange, changes_record
from communications.services.trigger_conditions import (
    PAYLOAD_PATH,
    conditions_errors,
    conditions_sql,
)
from loyalty.event_log import event_log_horizon
from loyalty.integration.models import CustomEventType
from loyalty.models import Event
from members.models import Member

logger = logging.getLogger(__name__)

State = Mailing.State
Status = Message.Status
DateRule = Trigger.DateRule

# Every member id: trigger inserts are bounded by their events, not by a range of ids.
_ALL_MEMBERS = (0, 2**63 - 1)
# Mailing fields that mean nothing for a trigger mailing (it has no start time or single
# run), with why.
_NOT_FOR_TRIGGERS = {
    "scheduled_at": "a trigger mailing has no start time: it sends as events come",
    "recurrence": "a trigger mailing does not recur: it sends as events come",
    "send_in_member_timezone": "a trigger's date rule has its own send hour",
    "message_lifetime": "a trigger mailing never ends, so a lifetime counted from its start "
                        "would end every message",
    "cascade_after": "trigger mailings send on one channel",
}


# --- checks -----------------------------------------------------------------------------------

def event_type_known(name: str) -> bool:
    return name in Event.Type.values or CustomEventType.objects.filter(
        name=name, active=True).exists()


def trigger_errors(*, trigger: Trigger) -> dict[str, str]:
    """What is wrong with a trigger's configuration, keyed by the field to fix."""
    errors: dict[str, str] = {}
    if bool(trigger.event_type) == bool(trigger.date_rule):
        errors["event_type"] = "choose an event type or a date rule, one of the two"
        return errors
    if trigger.event_type:
        if not event_type_known(trigger.event_type):
            errors["event_type"] = (f"{trigger.event_type!r} is neither in the event catalog "
                                    f"nor an active custom event type")
        problems = conditions_errors(trigger.conditions)
        if problems:
            errors["conditions"] = "; ".join(problems)
        if trigger.delay is not None and trigger.delay < timedelta(0):
            errors["delay"] = "a delay cannot be negative"
        errors.update(_cancel_errors(trigger))
        if trigger.days is not None:
            errors["days"] = "only date rules count days"
        return errors
    if trigger.date_rule == DateRule.BIRTHDAY:
        if trigger.days is not None:
            errors["days"] = "a birthday trigger counts no days"
    elif trigger.days is None or trigger.days < 1:
        errors["days"] = f"“{trigger.get_date_rule_display()}” needs a number of days, 1 or more"
    for name, text in (("conditions", "conditions are on event payloads"),
                       ("cancel_on", "only event triggers are cancelled by events"),
                       ("cancel_match", "only event triggers are cancelled by events")):
        if getattr(trigger, name):
            errors[name] = f"{text}; a date rule has none"
    if trigger.delay:
        errors["delay"] = "a date rule is due at its send hour; it has no delay"
    return errors


def _cancel_errors(trigger: Trigger) -> dict[str, str]:
    cancel_on = trigger.cancel_on
    if not cancel_on:
        return {"cancel_match": "set the cancelling event types first"} if (
            trigger.cancel_match) else {}
    errors = {}
    if not isinstance(cancel_on, list) or not all(isinstance(name, str) for name in cancel_on):
        return {"cancel_on": 'a list of event types, e.g. ["ORDER_REFUNDED"]'}
    unknown = [name for name in cancel_on if not event_type_known(name)]
    if unknown:
        errors["cancel_on"] = f"unknown event types: {', '.join(unknown)}"
    if not trigger.delay:
        errors["delay"] = ("a message is cancelled only while it waits out its delay: set a "
                           "delay, or remove the cancelling event types")
    if trigger.cancel_match and not PAYLOAD_PATH.match(trigger.cancel_match):
        errors["cancel_match"] = "a payload key, or keys joined by dots"
    return errors


def trigger_mailing_errors(*, mailing: Mailing) -> dict[str, str]:
    """What keeps a trigger mailing from being activated, keyed by the field to fix.

    The audience is optional: without one, every member an event names or a date rule finds;
    with a target group (or a static list), only its members at the time.
    """
    errors: dict[str, str] = {}
    if connection.vendor != "postgresql":
        # The matching is PostgreSQL SQL (jsonb paths, arrays); the embedded SQLite default
        # sends regular mailings only.
        errors["kind"] = "trigger mailings need PostgreSQL (DATABASE_URL)"
    chosen = [name for name in AUDIENCE_SOURCES if getattr(mailing, f"{name}_id") is not None]
    if len(chosen) > 1:
        errors[chosen[1]] = "a trigger mailing's audience is one target group or static list"
    for name, text in _NOT_FOR_TRIGGERS.items():
        if getattr(mailing, name) not in (None, "", False):
            errors[name] = text
    if mailing.pk is not None and mailing.cascade_steps.exists():
        errors["cascade_after"] = "trigger mailings send on one channel: remove the cascade"
    errors = mailing_content_errors(mailing=mailing, errors=errors)
    trigger = Trigger.objects.filter(mailing_id=mailing.pk).first() if mailing.pk else None
    if trigger is None:
        errors["trigger"] = "a trigger mailing needs its trigger: an event type or a date rule"
    else:
        errors.update(trigger_errors(trigger=trigger))
    return errors


# --- drafts -----------------------------------------------------------------------------------

# What a marketer sets on a trigger mailing: no schedule, recurrence, lifetime or cascade.
TRIGGER_MAILING_FIELDS = ("name", "campaign", "target_group", "static_list", "template",
                          "gateway", "category", "priority", "defer_capped", "track_engagement")
TRIGGER_FIELDS = ("event_type", "conditions", "delay", "cancel_on", "cancel_match", "date_rule",
                  "days", "send_hour")


@transaction.atomic
def trigger_mailing_create(*, by: object | None = None, trigger: Mapping[str, Any],
                           **fields: Any) -> Mailing:
    """A draft trigger mailing with its trigger, checked as the admin checks them; it sends
    nothing until `trigger_activate`. Trigger errors are keyed `trigger.<field>`."""
    _fields_check(fields=fields, trigger=trigger)
    mailing = Mailing(kind=Mailing.Kind.TRIGGER, created_by=by, **fields)
    mailing.full_clean(exclude=["created_by"])
    mailing.save()
    _trigger_write(Trigger(mailing=mailing), trigger)
    return mailing


@transaction.atomic
def trigger_mailing_update(*, mailing: Mailing, trigger: Mapping[str, Any] | None = None,
                           **fields: Any) -> Mailing:
    """Change a draft trigger mailing and (given) its trigger; once active it is fixed."""
    _fields_check(fields=fields, trigger=trigger or {})
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.kind != Mailing.Kind.TRIGGER:
        raise ValidationError({"kind": "not a trigger mailing"})
    if mailing.state != State.DRAFT:
        raise ValidationError({"state": f"a {mailing.state} trigger mailing can no longer be "
                                        f"changed"})
    for name, value in fields.items():
        setattr(mailing, name, value)
    mailing.full_clean(exclude=["created_by"])
    mailing.save(update_fields=list(fields))
    if trigger is not None:
        _trigger_write(Trigger.objects.get(mailing=mailing), trigger)
    return mailing


def _fields_check(*, fields: Mapping[str, Any], trigger: Mapping[str, Any]) -> None:
    unknown = {**{name: "cannot be set on a trigger mailing"
                  for name in set(fields) - set(TRIGGER_MAILING_FIELDS)},
               **{f"trigger.{name}": "not a field of a trigger"
                  for name in set(trigger) - set(TRIGGER_FIELDS)}}
    if unknown:
        raise ValidationError(unknown)


def _trigger_write(trigger: Trigger, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        setattr(trigger, name, value)
    try:
        trigger.full_clean(exclude=["mailing"])
    except ValidationError as exc:
        raise ValidationError({f"trigger.{name}": texts
                               for name, texts in exc.message_dict.items()}) from exc
    trigger.save()


# --- activation -------------------------------------------------------------------------------

@transaction.atomic
def trigger_activate(*, mailing: Mailing, now: datetime | None = None) -> Mailing:
    """Start a draft trigger mailing: from now on its events and dates become messages.

    Events recorded before the activation are not answered: the trigger's position in the log
    starts now.
    """
    from communications import tasks

    now = now or timezone.now()
    mailing = (Mailing.objects.select_for_update(of=("self",))
               .select_related("template", "gateway").get(pk=mailing.pk))
    if mailing.kind != Mailing.Kind.TRIGGER:
        raise ValidationError({"kind": "only a trigger mailing is activated; schedule this one"})
    if mailing.state != State.DRAFT:
        raise ValidationError({"state": f"a {mailing.state} trigger mailing cannot be "
                                        f"activated"})
    errors = trigger_mailing_errors(mailing=mailing)
    if errors:
        raise ValidationError(errors)
    mailing.state, mailing.started_at = State.SENDING, now
    mailing.save(update_fields=["state", "started_at"])
    Trigger.objects.filter(mailing=mailing).update(read_until=now)
    if mailing.trigger.date_rule:
        transaction.on_commit(lambda: tasks.run_date_triggers.delay())
    return mailing


def triggers_nudge() -> None:
    """Ask a worker to read the event log for triggers now (registered with
    loyalty.event_log.EVENT_READERS). Never raises: the beat schedule reads anyway."""
    try:
        from communications.tasks import read_trigger_events

        # No publish retries: the ingest's request must not wait out a broker outage.
        read_trigger_events.apply_async(retry=False)
    except Exception:  # noqa: BLE001
        logger.warning("trigger nudge not sent; the scheduled read will pick the events up",
                       exc_info=True)


# --- the event reader ------------------------------------------------------------------------

def trigger_events_read() -> dict[int, dict[str, int]]:
    """One pass of the event reader over every live event trigger: {mailing id: counts of the
    messages inserted (queued, skipped) and cancelled}, for the triggers that did anything."""
    horizon = event_log_horizon()
    # A paused trigger ignores what happens while it is paused: resumed, it does not answer
    # the events of the pause all at once.
    Trigger.objects.filter(mailing__state=State.PAUSED, read_until__lt=horizon).exclude(
        event_type="").update(read_until=horizon)
    return live_triggers_each(
        kind_field="event_type",
        read=lambda trigger: _trigger_read(trigger=trigger, horizon=horizon))


def live_triggers(kind_field: str) -> QuerySet[Trigger]:
    """The triggers of sending trigger mailings with `kind_field` (event_type, date_rule)
    set."""
    return Trigger.objects.filter(mailing__state=State.SENDING,
                                  mailing__kind=Mailing.Kind.TRIGGER).exclude(**{kind_field: ""})


def live_triggers_each(*, kind_field: str, read: Callable[[Trigger], dict[str, int]]
                        ) -> dict[int, dict[str, int]]:
    """`read` each live trigger with `kind_field` set, locked in a transaction of its own:
    {mailing id: counts} of those that did anything."""
    outcome: dict[int, dict[str, int]] = {}
    for pk in list(live_triggers(kind_field).values_list("pk", flat=True)):
        with transaction.atomic():
            trigger = _live_trigger_locked(pk)
            if trigger is None:
                continue
            counts = read(trigger)
        if any(counts.values()):
            outcome[trigger.mailing_id] = counts
    return outcome


def _live_trigger_locked(pk: int) -> Trigger | None:
    """The trigger of a sending mailing, locked for this pass with what the insert reads; None
    when its mailing is no longer sending, or another worker holds it (and does the pass).

    The mailing row is held FOR KEY SHARE until the pass commits: a pause or cancel (which lock
    it FOR UPDATE) waits for the pass, and then finds and cancels the rows it wrote, instead of
    leaving them queued in a cancelled mailing. Claims (FOR NO KEY UPDATE) do not wait for it.
    """
    trigger = (Trigger.objects.select_for_update(skip_locked=True, of=("self",))
               .select_related("mailing__template", "mailing__gateway",
                               "mailing__target_group", "mailing__static_list")
               .filter(pk=pk).first())
    if trigger is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state FROM {connection.ops.quote_name(Mailing._meta.db_table)} "
                       f"WHERE id = %s FOR KEY SHARE", [trigger.mailing_id])
        (state,) = cursor.fetchone()
    return trigger if state == State.SENDING else None


def _trigger_read(*, trigger: Trigger, horizon: datetime) -> dict[str, int]:
    mailing = trigger.mailing
    after = trigger.read_until or mailing.started_at or horizon
    event_table = Event._meta.db_table
    conditions, condition_params = conditions_sql(trigger.conditions, alias="e")
    # event_type_recorded_idx: a pass reads only the new events of the trigger's type.
    # A trigger never answers the statuses of its own messages (MESSAGE_DELIVERED and the
    # like carry the mailing): each answer would be delivered in turn, without end.
    source = (f"SELECT e.id AS event_id, e.member_id, '' AS occasion, "
              f"e.occurred_at + %s AS due, e.recorded_at AS position FROM {event_table} e "
              f"WHERE e.type = %s AND e.recorded_at > %s AND e.member_id IS NOT NULL "
              f"AND e.payload->>'mailing_id' IS DISTINCT FROM %s"
              f"{''.join(f' AND {sql}' for sql in conditions)}")
    params = [trigger.delay or timedelta(0), trigger.event_type, after, str(mailing.pk),
              *condition_params]
    inserted = trigger_messages_insert(mailing=mailing, source=(source, params), held_for="",
                                now=timezone.now())
    cancelled = _messages_cancel(trigger=trigger, after=after,
                                 inserted=[pk for pk, _ in inserted])
    if horizon > after:
        Trigger.objects.filter(pk=trigger.pk).update(read_until=horizon)
    counts = insert_counts(inserted)
    counts["cancelled"] = len(cancelled)
    if counts["queued"] > len(cancelled):
        transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing.pk))
    return counts


def insert_counts(inserted: Sequence[tuple[int, str]]) -> dict[str, int]:
    return {"queued": sum(1 for _, status in inserted if status == Status.QUEUED),
            "skipped": sum(1 for _, status in inserted if status == Status.SKIPPED)}


def trigger_messages_insert(*, mailing: Mailing, source: tuple[str, list[Any]], held_for: str,
                     now: datetime) -> list[tuple[int, str]]:
    """Insert a message per row of `source` (SQL selecting event_id, member_id, occasion, due,
    position) for the members the mailing's audience holds, in one INSERT … SELECT; rows
    already there (the same event or occasion) are left alone. Returns (id, status) of the
    rows written."""
    source_sql, source_params = source
    audience = (mailing_audience(mailing=mailing)
                if any(getattr(mailing, f"{name}_id") for name in AUDIENCE_SOURCES)
                else Member.objects.all())
    # Bandit B611 reviewed: source_sql is a queryset Django compiled, its values in source_params.
    audience = audience.filter(pk__in=RawSQL(f"SELECT src.member_id FROM ({source_sql}) src",  # nosec B611
                                             source_params))
    channel = mailing.template.channel
    snap_sql, snap_params = recipients_select(mailing=mailing, audience=audience,
                                              members=_ALL_MEMBERS, channel=channel,
                                              gateway=mailing.gateway)
    columns = {**recipient_columns(), "event_id": "src.event_id", "occasion": "src.occasion",
               "not_before": "CASE WHEN src.due > %s THEN src.due END",
               "held_for": "CASE WHEN src.due > %s THEN %s ELSE '' END"}
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Message._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {', '.join(columns.values())} FROM ({source_sql}) src "
            f"JOIN ({snap_sql}) snap ON snap.pk = src.member_id "
            f"ORDER BY src.position, src.member_id "
            f"ON CONFLICT DO NOTHING RETURNING id, status",
            [mailing.pk, channel, Status.QUEUED, Status.SKIPPED, now, now, now, now, held_for,
             *source_params, *snap_params])
        return list(cursor.fetchall())


def _messages_cancel(*, trigger: Trigger, after: datetime,
                     inserted: Sequence[int]) -> list[int]:
    """Skip (`trigger_cancelled`) the trigger's queued messages that a cancelling event
    answers: one of the `cancel_on` types, for the same member, occurring within the delay
    after the triggering event (with an equal payload value at `cancel_match`, when set).

    Looked at: the messages just inserted (their cancelling event may have come first), and
    those of members with a cancelling event recorded since the last pass. A claimed message
    is past cancelling; an UPDATE waiting on a claim's lock finds it no longer queued.
    """
    if not trigger.cancel_on or not trigger.delay:
        return []
    event_table = Event._meta.db_table
    table = connection.ops.quote_name(Message._meta.db_table)
    match, match_params = "", []
    if trigger.cancel_match:
        path = trigger.cancel_match.split(".")
        match = "AND (c.payload #> %s) = (src.payload #> %s)"
        match_params = [path, path]
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} m SET status = %s, skip_reason = %s, updated_at = %s "
            f"FROM {event_table} src "
            f"WHERE m.mailing_id = %s AND m.status = %s AND src.id = m.event_id "
            f"AND (m.id = ANY(%s) OR m.member_id IN (SELECT c.member_id FROM {event_table} c "
            f"     WHERE c.type = ANY(%s) AND c.recorded_at > %s AND c.member_id IS NOT NULL)) "
            f"AND EXISTS (SELECT 1 FROM {event_table} c WHERE c.member_id = m.member_id "
            f"     AND c.type = ANY(%s) AND c.id <> src.id AND c.occurred_at >= src.occurred_at "
            f"     AND c.occurred_at < src.occurred_at + %s {match}) "
            f"RETURNING m.id",
            [Status.SKIPPED, Message.SkipReason.TRIGGER_CANCELLED, now, trigger.mailing_id,
             Status.QUEUED, list(inserted), list(trigger.cancel_on), after,
             list(trigger.cancel_on), trigger.delay, *match_params])
        ids = [pk for (pk,) in cursor.fetchall()]
    changes_record(changes=[StatusChange(pk, Status.SKIPPED, now, "trigger_cancelled",
                                         "a cancelling event occurred within the trigger's "
                                         "delay") for pk in ids],
                   source=MessageStatusChange.Source.TRIGGER, recorded_at=now)
    return ids
