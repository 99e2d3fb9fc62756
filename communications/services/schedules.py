"""When a mailing goes out: recurring mailings (every Monday at 9) and sending at the same
clock time in every member's time zone.

A recurring mailing is never sent itself: each occurrence of its rule (RFC 5545, read by
dateutil) becomes a mailing of its own, copied from it, whose audience is taken when that
run starts. Occurrences are read as wall-clock times in the program's time zone, so "every
Monday at 9" stays at 9 across daylight-saving changes.

A local-time mailing is scheduled for a clock time read in the program's time zone; its
audience is frozen when the first time zone in the world (UTC+14) reaches that time, and each
member's message waits (`held_for = local_time`) until their own zone reaches it.
"""
from __future__ import annotations

import logging
import zoneinfo
from datetime import UTC, datetime, timedelta

from dateutil.rrule import HOURLY, rrule, rrulestr
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from communications.models import CascadeStep, Mailing, Message
from communications.services.compliance import member_zone

logger = logging.getLogger(__name__)

State = Mailing.State
Status = Message.Status

# Kiritimati: the first place on Earth to reach a given clock time.
EARLIEST_UTC_OFFSET = timedelta(hours=14)
# The copy a run gets from its recurring mailing (the audience, the content, the rules).
RUN_FIELDS = ("campaign", "target_group", "static_list", "member", "template", "gateway",
              "category", "priority", "defer_capped", "message_lifetime",
              "send_in_member_timezone", "cascade_after", "track_engagement", "created_by")
_RUN_ATTNAMES = tuple(Mailing._meta.get_field(name).attname for name in RUN_FIELDS)


def _program_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


# --- recurrence -----------------------------------------------------------------------------

def recurrence_rule(rule: str, *, start: datetime) -> rrule:
    """The rule read from `start` on, with wall-clock occurrences in the program's zone;
    ValidationError on `recurrence` when it cannot be read or repeats more than hourly."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:"):]
    if "DTSTART" in text.upper():
        raise ValidationError({"recurrence": "give the rule without DTSTART: the scheduled time "
                                             "is the start"})
    local_start = start.astimezone(_program_zone()).replace(tzinfo=None, microsecond=0)
    try:
        parsed = rrulestr(text, dtstart=local_start)
    except (ValueError, TypeError) as exc:
        raise ValidationError({"recurrence": f"not an iCalendar rule: {exc}"}) from exc
    if not isinstance(parsed, rrule):
        raise ValidationError({"recurrence": "give one RRULE"})
    if parsed._freq > HOURLY:  # dateutil keeps the frequency private; MINUTELY, SECONDLY
        raise ValidationError({"recurrence": "a mailing repeats hourly at most"})
    return parsed


def recurrence_next(*, rule: str, start: datetime, after: datetime,
                    inclusive: bool = False) -> datetime | None:
    """The rule's first occurrence after `after` (or at it, when `inclusive`), aware UTC;
    None when the rule has ended."""
    zone = _program_zone()
    local_after = after.astimezone(zone).replace(tzinfo=None)
    occurrence = recurrence_rule(rule, start=start).after(local_after, inc=inclusive)
    if occurrence is None:
        return None
    return occurrence.replace(tzinfo=zone).astimezone(UTC)


def mailing_runs_start(*, now: datetime | None = None) -> list[int]:
    """Copy each due recurring mailing into a scheduled run and move it to its next
    occurrence (completed when the rule has none). Run by the scheduler tick.

    Only the latest due occurrence becomes a run: after a scheduler outage the program gets
    one mailing, not a burst of late ones. The recurring row is locked, so two schedulers make
    one run. Returns the ids of the runs.
    """
    now = now or timezone.now()
    runs = []
    due = list(Mailing.objects.filter(state=State.RECURRING, scheduled_at__lte=now)
               .values_list("pk", flat=True))
    for mailing_id in due:
        with transaction.atomic():
            parent = (Mailing.objects.select_for_update()
                      .filter(pk=mailing_id, state=State.RECURRING, scheduled_at__lte=now)
                      .first())
            if parent is None:
                continue
            occurrence = parent.scheduled_at
            latest = _latest_due(parent=parent, now=now)
            if latest != occurrence:
                logger.warning("recurring mailing %s: occurrences from %s to before %s were "
                               "missed; only %s is sent", parent.pk, occurrence, latest, latest)
            run = Mailing.objects.create(
                name=f"{parent.name}: {timezone.localtime(latest):%Y-%m-%d %H:%M}",
                recurring_parent=parent, state=State.SCHEDULED, scheduled_at=latest,
                **{attname: getattr(parent, attname) for attname in _RUN_ATTNAMES})
            CascadeStep.objects.bulk_create([
                CascadeStep(mailing=run, position=step.position, template_id=step.template_id,
                            gateway_id=step.gateway_id)
                for step in parent.cascade_steps.all()])
            runs.append(run.pk)
            following = recurrence_next(rule=parent.recurrence, start=parent.scheduled_at,
                                        after=max(latest, now))
            if following is None:
                parent.state, parent.completed_at = State.COMPLETED, now
            else:
                parent.scheduled_at = following
            parent.save(update_fields=["state", "scheduled_at", "completed_at"])
    return runs



def _latest_due(*, parent: Mailing, now: datetime) -> datetime:
    latest = parent.scheduled_at
    while True:
        following = recurrence_next(rule=parent.recurrence, start=parent.scheduled_at,
                                    after=latest)
        if following is None or following > now:
            return latest
        latest = following


# --- each member's local time ---------------------------------------------------------------

def local_time_start(*, scheduled_at: datetime) -> datetime:
    """When a local-time mailing for `scheduled_at` (a clock time in the program's zone) must
    start: the moment the earliest zone reaches that clock time."""
    wall = scheduled_at.astimezone(_program_zone()).replace(tzinfo=None)
    return (wall - EARLIEST_UTC_OFFSET).replace(tzinfo=UTC)


def messages_hold_until_local_time(*, mailing: Mailing) -> int:
    """Hold each queued message of a local-time mailing until the scheduled clock time in its
    member's zone: one UPDATE per time zone of the audience (a few hundred at most).

    A member whose time has already passed when the audience is frozen (the mailing started
    late) gets the message at once. Returns the messages held.
    """
    wall = mailing.scheduled_at.astimezone(_program_zone()).replace(tzinfo=None)
    now = timezone.now()
    queued = Message.objects.filter(mailing=mailing, status=Status.QUEUED, is_test=False)
    zones = (queued.order_by().values_list("member__timezone", flat=True).distinct())
    held = 0
    for zone in list(zones):
        moment = wall.replace(tzinfo=member_zone(zone)).astimezone(UTC)
        if moment <= now:
            continue
        ids = Message.objects.filter(pk__in=queued.filter(member__timezone=zone).values("pk"))
        held += ids.update(not_before=moment, held_for=Message.HoldReason.LOCAL_TIME,
                           updated_at=now)
    return held


def mailing_start_due(*, mailing: Mailing, now: datetime) -> bool:
    """Whether a scheduled mailing is due to start."""
    if mailing.send_in_member_timezone:
        return local_time_start(scheduled_at=mailing.scheduled_at) <= now
    return mailing.scheduled_at <= now


def scheduled_due_ids(*, now: datetime) -> list[int]:
    """The scheduled mailings due to start: at their time, or for local-time ones when the
    earliest zone reaches it, up to 26 hours before the instant (from UTC-12 to UTC+14)."""
    lead = EARLIEST_UTC_OFFSET + timedelta(hours=12)  # UTC+14 against a program at UTC-12
    candidates = Mailing.objects.filter(state=State.SCHEDULED).filter(
        scheduled_at__lte=now + lead).only("pk", "scheduled_at", "send_in_member_timezone")
    return [mailing.pk for mailing in candidates if mailing_start_due(mailing=mailing, now=now)]

