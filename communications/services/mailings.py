"""Mailing use cases: schedule, start, freeze the audience, pause, resume, cancel.

The life of a mailing (DESIGN.md): draft -> scheduled -> (tick) preparing: the audience frozen
into message rows, in parts of member ids taken by every free worker, one INSERT ... SELECT
each -> sending: batches claimed atomically, sent through the gateway, results written in bulk
(paused and resumed at will, see `dispatch`) -> completed; or cancelled / failed.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    FilteredRelation,
    Max,
    Min,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.selectors import target_group_members
from communications.gateways import GATEWAYS
from communications.models import AudiencePart, Mailing, Message
from communications.services.compliance import messages_expire
from communications.services.dispatch import (
    mailing_complete_if_done,
    mailing_dispatch_enqueue,
    messages_mark_unconfirmed_unknown,
)
from members.models import Channel, Consent, Device, Member, Suppression
from members.selectors import ADDRESS_FIELDS, push_device_chosen
from members.services.suppressions import SUPPRESSIBLE_CHANNELS

logger = logging.getLogger(__name__)

Status = Message.Status
SkipReason = Message.SkipReason
State = Mailing.State

# A sending mailing whose batches have not claimed anything for this long gets its batches
# enqueued again (a worker or broker lost them); claims make a duplicate batch harmless.
REDISPATCH_AFTER_SECONDS = 60
# Shared addresses are read and their messages skipped in chunks of this many.
_IDS_PER_UPDATE = 10_000

# Where the snapshot finds a member's address: a member column, or for push their device.
PUSH_ADDRESS = "_device__token"
SNAPSHOT_CHANNELS = frozenset({*ADDRESS_FIELDS, Channel.PUSH})
# The device platforms a push provider can reach: FCM takes only Firebase registration tokens
# (given an APNs or Huawei token it answers INVALID_ARGUMENT, and the device would be
# deactivated for nothing). A provider not listed (the development sink) takes every platform.
PUSH_PLATFORMS: dict[str, tuple[str, ...]] = {"fcm": (Device.Platform.FCM,)}


# --- scheduling -----------------------------------------------------------------------------

def mailing_schedulable_errors(*, mailing: Mailing) -> dict[str, str]:
    """What keeps a mailing from being scheduled, keyed by the field to fix."""
    errors: dict[str, str] = {}
    if mailing.target_group_id is None:
        errors["target_group"] = "a mailing needs a target group"
    if mailing.template_id is None:
        errors["template"] = "a mailing needs a template"
    if mailing.gateway_id is None:
        errors["gateway"] = "a mailing needs a gateway"
    elif not mailing.gateway.is_active:
        errors["gateway"] = "this gateway is not active"
    if not errors and mailing.gateway.channel != mailing.template.channel:
        errors["gateway"] = (
            f"the gateway sends {mailing.gateway.channel}, the template is for "
            f"{mailing.template.channel}"
        )
    if not errors and mailing.template.channel not in SNAPSHOT_CHANNELS:
        errors["template"] = f"{mailing.template.channel} mailings are not supported yet"
    if not errors:
        adapter = GATEWAYS.get(mailing.gateway.provider)
        if adapter is None or mailing.template.channel not in adapter.channels:
            errors["gateway"] = (f"the gateway's provider {mailing.gateway.provider!r} cannot "
                                 f"send {mailing.template.channel}")
    return errors


@transaction.atomic
def mailing_schedule(*, mailing: Mailing, at: datetime | None = None) -> Mailing:
    """Schedule a draft (or reschedule a scheduled) mailing; `at=None` means now."""
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in (State.DRAFT, State.SCHEDULED):
        raise ValidationError({"state": f"a {mailing.state} mailing cannot be scheduled"})
    errors = mailing_schedulable_errors(mailing=mailing)
    if errors:
        raise ValidationError(errors)
    mailing.scheduled_at = at or mailing.scheduled_at or timezone.now()
    mailing.state = State.SCHEDULED
    mailing.save(update_fields=["scheduled_at", "state"])
    return mailing


def mailing_start_now(*, mailing: Mailing) -> Mailing:
    """Schedule for now and start at once instead of waiting for the next scheduler tick."""
    from communications import tasks

    mailing = mailing_schedule(mailing=mailing, at=timezone.now())
    transaction.on_commit(lambda: tasks.prepare_mailing.delay(mailing.pk))
    return mailing


@transaction.atomic
def mailing_cancel(*, mailing: Mailing) -> Mailing:
    """Stop a mailing: messages not yet sent end as `cancelled`; claimed ones finish."""
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in (State.DRAFT, State.SCHEDULED, State.PREPARING, State.SENDING,
                             State.PAUSED):
        raise ValidationError({"state": f"a {mailing.state} mailing cannot be cancelled"})
    now = timezone.now()
    Message.objects.filter(mailing=mailing, status=Status.QUEUED).update(
        status=Status.CANCELLED, updated_at=now
    )
    mailing.state = State.CANCELLED
    mailing.completed_at = now
    mailing.save(update_fields=["state", "completed_at"])
    return mailing


def _state_move(*, mailing: Mailing, source: str, target: str, verb: str) -> Mailing:
    """Move a locked mailing from `source` to `target`, or refuse naming the state it is in."""
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state != source:
        raise ValidationError({"state": f"only a {source} mailing can be {verb}, this one is "
                                        f"{mailing.state}"})
    mailing.state = target
    mailing.save(update_fields=["state"])
    return mailing


@transaction.atomic
def mailing_pause(*, mailing: Mailing) -> Mailing:
    """Stop claiming a sending mailing's messages; batches already claimed finish."""
    return _state_move(mailing=mailing, source=State.SENDING, target=State.PAUSED,
                       verb="paused")


@transaction.atomic
def mailing_resume(*, mailing: Mailing) -> Mailing:
    """Send a paused mailing's remaining messages. Only queued rows are ever claimed, so what
    went out before the pause is never sent again."""
    mailing = _state_move(mailing=mailing, source=State.PAUSED, target=State.SENDING,
                          verb="resumed")
    transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing.pk))
    return mailing


# --- the scheduler tick ---------------------------------------------------------------------

def mailings_tick(*, now: datetime | None = None) -> dict[str, Any]:
    """Run by the periodic scheduler: start due mailings and keep sending ones moving.

    All state lives in the database, so a restarted scheduler or worker picks up exactly where
    the last one stopped.
    """
    from communications import tasks

    now = now or timezone.now()
    due = list(
        Mailing.objects.filter(state=State.SCHEDULED, scheduled_at__lte=now)
        .values_list("pk", flat=True)
    )
    for mailing_id in due:
        tasks.prepare_mailing.delay(mailing_id)

    in_doubt = messages_mark_unconfirmed_unknown(now=now)
    expired = messages_expire(now=now)

    # Parts nobody is freezing (their task was lost with a worker or the broker); a part being
    # frozen is locked and skipped by whoever takes the re-sent task.
    preparing = list(Mailing.objects.filter(state=State.PREPARING).values_list("pk", flat=True))
    for mailing_id in preparing:
        if not mailing_preparing_finish(mailing_id=mailing_id):
            tasks.freeze_audience_part.delay(mailing_id)

    quiet_since = now - timedelta(seconds=REDISPATCH_AFTER_SECONDS)
    stalled = list(
        Mailing.objects.filter(state=State.SENDING)
        .filter(Q(last_dispatch_at__isnull=True) | Q(last_dispatch_at__lt=quiet_since))
        .values_list("pk", flat=True)
    )
    for mailing_id in stalled:
        if not mailing_complete_if_done(mailing_id=mailing_id):
            mailing_dispatch_enqueue(mailing_id=mailing_id)
    return {"started": due, "in_doubt": in_doubt, "expired": expired, "preparing": preparing,
            "stalled": stalled}


# --- audience snapshot ----------------------------------------------------------------------

def mailing_prepare(*, mailing_id: int) -> int:
    """Start a due mailing: freeze its audience into message rows, then send.

    The scheduled -> preparing change cuts the audience into parts by member id
    (`AudiencePart`), in one transaction, so the start happens once even if two schedulers
    race. The parts go to every free worker and this call takes parts too, so without another
    worker it freezes the whole audience itself. Returns the rows this call wrote.
    """
    from communications import tasks

    with transaction.atomic():
        mailing = (
            Mailing.objects.select_for_update(of=("self",))
            .select_related("template", "target_group", "gateway")
            .filter(pk=mailing_id, state=State.SCHEDULED)
            .first()
        )
        if mailing is None:
            return 0
        # What was true when it was scheduled may not be now (a gateway deactivated since).
        errors = mailing_schedulable_errors(mailing=mailing)
        if errors:
            mailing.state = State.FAILED
            mailing.completed_at = timezone.now()
            mailing.failure_reason = "; ".join(f"{field}: {text}" for field, text in errors.items())
            mailing.save(update_fields=["state", "completed_at", "failure_reason"])
            logger.warning("mailing %s failed to start: %s", mailing_id, mailing.failure_reason)
            return 0
        parts = _audience_parts_create(mailing=mailing)
        mailing.state = State.PREPARING
        mailing.started_at = timezone.now()
        mailing.save(update_fields=["state", "started_at"])
        # This call takes one part; the others are offered to the workers.
        for _ in range(parts - 1):
            transaction.on_commit(lambda: tasks.freeze_audience_part.delay(mailing_id))
    return audience_parts_freeze(mailing_id=mailing_id)


def _audience_parts_create(*, mailing: Mailing) -> int:
    bounds = Member.objects.aggregate(first=Min("pk"), last=Max("pk"))
    first, last = bounds["first"] or 0, bounds["last"] or 0
    size = settings.ENGAGE_AUDIENCE_PART_SIZE
    parts = [AudiencePart(mailing=mailing, first_member_id=low,
                          last_member_id=min(low + size - 1, last))
             for low in range(first, last + 1, size)]
    AudiencePart.objects.bulk_create(parts)
    return len(parts)


def audience_parts_freeze(*, mailing_id: int) -> int:
    """Freeze parts of a preparing mailing's audience until none is left to take; the worker
    that finds every part done starts the sending. Returns the rows written here.

    A part is taken with SKIP LOCKED (two workers never freeze the same one) and the mailing
    row is read FOR SHARE while a part is written: a cancel waits for the part in progress and
    then cancels its rows too, and a part never writes rows for a cancelled mailing.
    """
    written = 0
    while True:
        with transaction.atomic():
            part = (AudiencePart.objects.select_for_update(skip_locked=True)
                    .filter(mailing_id=mailing_id, done_at__isnull=True)
                    .order_by("first_member_id").first())
            if part is None:
                break
            mailing = _mailing_read_shared(mailing_id=mailing_id)
            if mailing is None or mailing.state != State.PREPARING:
                break
            part.written = _audience_snapshot(
                mailing=mailing, members=(part.first_member_id, part.last_member_id))
            part.done_at = timezone.now()
            part.save(update_fields=["written", "done_at"])
            written += part.written
    mailing_preparing_finish(mailing_id=mailing_id)
    return written


def _mailing_read_shared(*, mailing_id: int) -> Mailing | None:
    mailing = (Mailing.objects.select_related("template", "target_group", "gateway")
               .filter(pk=mailing_id).first())
    if mailing is not None and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT state FROM {Mailing._meta.db_table} WHERE id = %s FOR SHARE",
                           [mailing_id])
            mailing.state = cursor.fetchone()[0]
    return mailing


def mailing_preparing_finish(*, mailing_id: int) -> bool:
    """Preparing -> sending once every audience part is frozen; True if this call did it.

    Each freezer checks after its own commit, so whichever commits last sees all parts done;
    two that both see it race on one conditional UPDATE, which only one wins. The winner skips
    the audience's duplicate addresses in the same transaction: batches claim only from a
    sending mailing, and it is not sending for them until this commits.
    """
    if AudiencePart.objects.filter(mailing_id=mailing_id, done_at__isnull=True).exists():
        return False
    with transaction.atomic():
        started = Mailing.objects.filter(pk=mailing_id, state=State.PREPARING).update(
            state=State.SENDING)
        if started:
            duplicates = _duplicate_addresses_skip(mailing_id=mailing_id)
            transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing_id))
    if started:
        frozen = AudiencePart.objects.filter(mailing_id=mailing_id).aggregate(n=Sum("written"))
        logger.info("mailing %s: audience of %s frozen, %s duplicate addresses skipped",
                    mailing_id, frozen["n"] or 0, duplicates)
    return bool(started)


def _duplicate_addresses_skip(*, mailing_id: int) -> int:
    """One message per address: of the queued messages sharing a channel and address, the
    lowest member id's stays queued and the others are skipped as `duplicate_address`.

    Decided over the whole audience once its last part is frozen, not by a condition in each
    part's INSERT: parts are written at once by different workers, none sees another's rows
    before they commit, so a pair split across two parts would pass both. Only queued messages
    count, so a member skipped for any other reason never takes the address from one who may
    have it. The rows are still being prepared (nothing can claim them yet), so this is part
    of the snapshot and, like its INSERT, records no status change. Runs inside the caller's
    transaction.

    One aggregate over the audience finds the shared addresses (usually none); only their few
    messages are read and updated by id. The planner sees the statistics of the table before
    the audience was written (a handful of rows): a single UPDATE ... FROM the aggregate re-ran
    it for every message (44 s for 10k), and the aggregate itself is sorted by collation
    (0.35-0.5 s for 140k messages) unless sorting is ruled out, when it is hashed (0.12 s).
    """
    queued = Message.objects.filter(mailing_id=mailing_id, status=Status.QUEUED)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
    shared = list(queued.values("channel", "address").annotate(holders=Count("pk"))
                  .filter(holders__gt=1).order_by().values_list("channel", "address"))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = on")
    duplicates: list[int] = []
    for start in range(0, len(shared), _IDS_PER_UPDATE):
        chunk = set(shared[start:start + _IDS_PER_UPDATE])
        kept: set[tuple[str, str]] = set()
        holders = (queued.filter(address__in={address for _, address in chunk})
                   .order_by("member_id").values_list("pk", "channel", "address"))
        for pk, channel, address in holders:
            if (channel, address) not in chunk:
                continue  # the same address on another channel, not shared there
            if (channel, address) in kept:
                duplicates.append(pk)
            else:
                kept.add((channel, address))
    now = timezone.now()
    for start in range(0, len(duplicates), _IDS_PER_UPDATE):
        Message.objects.filter(pk__in=duplicates[start:start + _IDS_PER_UPDATE]).update(
            status=Status.SKIPPED, skip_reason=SkipReason.DUPLICATE_ADDRESS, updated_at=now)
    return len(duplicates)


def _skip_reason(*, mailing: Mailing, channel: str, address_field: str) -> Case:
    """Why a member of the audience must not get this mailing ('' = send), first rule wins.

    Consent, suppression and double opt-in are the law here, so they are decided in the same
    statement that freezes the audience: nothing queued can be against them at snapshot time.
    The consents come in through LEFT JOINs (`_granted`, `_category_withdrawn`, annotated by
    `_audience_snapshot`) and the suppression list through an uncorrelated IN, so PostgreSQL
    hashes them once instead of probing an index per member (5.4 s -> about 1 s for 1M).
    `address_field` is a member column, or the token of the push device joined as `_device`.
    A shared address is decided later, over the whole audience (`_duplicate_addresses_skip`).
    """
    no_address = Q(**{address_field: ""}) | Q(**{f"{address_field}__isnull": True})
    whens = [
        When(~Q(status=Member.Status.ACTIVE), then=Value(SkipReason.MEMBER_INACTIVE)),
        When(no_address, then=Value(SkipReason.NO_ADDRESS)),
    ]
    if channel in SUPPRESSIBLE_CHANNELS:
        # Push tokens are not suppressed: a dead token deactivates its device instead.
        whens.append(When(Q(**{f"{address_field}__in": Suppression.objects.filter(
            channel=channel).values("address")}), then=Value(SkipReason.SUPPRESSED)))
    whens.append(When(_granted__isnull=True, then=Value(SkipReason.OPTED_OUT)))
    if mailing.category_id is not None:
        # Consent to the channel stands; the member only left this kind of mailing.
        whens.append(When(_category_withdrawn__isnull=False,
                          then=Value(SkipReason.NOT_SUBSCRIBED)))
    if channel == Channel.EMAIL and settings.ENGAGE_EMAIL_DOUBLE_OPT_IN:
        whens.append(When(email_verified_at__isnull=True, then=Value(SkipReason.UNCONFIRMED)))
    return Case(*whens, default=Value(""), output_field=CharField())


def _consent_joins(*, mailing: Mailing, channel: str,
                   members: tuple[int, int]) -> dict[str, FilteredRelation]:
    """The member's granted channel consent and withdrawn category consent, as LEFT JOINs
    (at most one row each: the current state is unique per channel, purpose and category).

    The part's member range is repeated on the consents: PostgreSQL does not carry a range
    across a join, and without it every part hashed all 1.4M consent rows (0.4 s a part).
    """
    marketing = Q(consents__channel=channel, consents__purpose=Consent.Purpose.MARKETING,
                  consents__member__gte=members[0], consents__member__lte=members[1])
    joins = {"_granted": FilteredRelation("consents", condition=marketing & Q(
        consents__category=None, consents__state=Consent.State.GRANTED))}
    if mailing.category_id is not None:
        joins["_category_withdrawn"] = FilteredRelation("consents", condition=marketing & Q(
            consents__category_id=mailing.category_id,
            consents__state=Consent.State.WITHDRAWN))
    return joins


def _address_joins(*, mailing: Mailing, channel: str,
                   members: tuple[int, int]) -> dict[str, FilteredRelation]:
    """For push, the device the member's push goes to, as a LEFT JOIN `_device` (at most one
    row: the join condition is the id `push_device_chosen` picks, the most recently seen).

    A join rather than a correlated subquery in the select list: the token is read by the
    no-address and suppression rules and as the address, and PostgreSQL would run a subquery
    once per mention; the join's subquery runs once per member who has a device.
    """
    if channel != Channel.PUSH:
        return {}
    platforms = PUSH_PLATFORMS.get(mailing.gateway.provider)
    return {"_device": FilteredRelation("devices", condition=Q(
        devices__member__gte=members[0], devices__member__lte=members[1],
        devices__pk=push_device_chosen(platforms=platforms)))}


def _audience_snapshot(*, mailing: Mailing, members: tuple[int, int]) -> int:
    """Write the message rows of the audience members whose ids are in the range `members`."""
    channel = mailing.template.channel
    address_field = PUSH_ADDRESS if channel == Channel.PUSH else ADDRESS_FIELDS[channel]
    now = timezone.now()
    select = (
        target_group_members(target_group=mailing.target_group)
        .filter(pk__range=members)
        .order_by()
        .annotate(**_consent_joins(mailing=mailing, channel=channel, members=members),
                  **_address_joins(mailing=mailing, channel=channel, members=members))
        .annotate(_snap_address=Coalesce(F(address_field), Value(""),
                                         output_field=CharField()),
                  _snap_reason=_skip_reason(mailing=mailing, channel=channel,
                                            address_field=address_field))
        .values("pk", "_snap_address", "_snap_reason")
    )
    select_sql, params = select.query.sql_with_params()
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    # The skip reason is computed once in the inner select and the status derived from it
    # outside, so the consent and suppression lookups run once per member, not twice.
    columns = {
        "mailing_id": "%s", "member_id": "snap.pk", "channel": "%s",
        "address": "snap._snap_address",
        "status": "CASE WHEN snap._snap_reason = '' THEN %s ELSE %s END",
        "skip_reason": "snap._snap_reason", "attempts": "0", "provider_id": "''",
        "error_code": "''", "error": "''", "created_at": "%s", "updated_at": "%s",
    }
    outer_params = [mailing.pk, channel, Status.QUEUED, Status.SKIPPED, now, now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {', '.join(columns.values())} FROM ({select_sql}) snap",
            outer_params + list(params),
        )
        return cursor.rowcount

