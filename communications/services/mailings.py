"""Mailing use cases: schedule, start, freeze the audience, pause, resume, cancel.

The life of a mailing (DESIGN.md): draft -> scheduled -> (tick) preparing: the audience frozen
into message rows, in parts of member ids taken by every free worker, one INSERT ... SELECT
each -> sending: batches claimed atomically, sent through the gateway, results written in bulk
(paused and resumed at will, see `dispatch`) -> completed; or cancelled / failed.
"""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import (
    Count,
    OuterRef,
    Q,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from communications.gateways import GATEWAYS
from communications.models import AudiencePart, Mailing, MailingVariant, Message
from communications.services.approvals import mailing_approval_errors
from communications.services.audiences import (
    AUDIENCE_EDITABLE_STATES,
    mailing_audience_bounds,
    mailing_audience_errors,
)
from communications.services.cascade import (
    cascade_errors,
    cascade_fallbacks_create,
    cascade_part_snapshot,
    mailing_cascade_set,
)
from communications.services.compliance import messages_expire
from communications.services.dispatch import (
    BUDGET_REACHED,
    mailing_complete_if_done,
    mailing_dispatch_enqueue,
    messages_mark_unconfirmed_unknown,
)
from communications.services.experiments import (
    experiment_errors,
    experiments_decide,
    mailing_variants_set,
)
from communications.services.schedules import (
    mailing_runs_start,
    messages_hold_until_local_time,
    recurrence_next,
    recurrence_rule,
    scheduled_due_ids,
)
from communications.services.snapshots import (
    SNAPSHOT_CHANNELS,
    audience_snapshot,
    duplicate_addresses_skip,
)
from communications.services.statuses import receipts_apply

logger = logging.getLogger(__name__)

Status = Message.Status
SkipReason = Message.SkipReason
State = Mailing.State



# --- scheduling -----------------------------------------------------------------------------

def mailing_schedulable_errors(*, mailing: Mailing) -> dict[str, str]:
    """What keeps a mailing from being scheduled, keyed by the field to fix."""
    errors = mailing_audience_errors(mailing=mailing)
    if mailing.kind == Mailing.Kind.TRIGGER:
        errors["kind"] = "a trigger mailing is activated, not scheduled"
    return mailing_content_errors(mailing=mailing, errors=errors)


def mailing_content_errors(*, mailing: Mailing,
                           errors: dict[str, str] | None = None) -> dict[str, str]:
    """What keeps a mailing's content (template, gateway, cascade) from being sent, keyed by
    the field to fix, added to the `errors` found before; the checks that compare fields run
    only while there are none."""
    errors = dict(errors or {})
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
    if not errors:
        errors = cascade_errors(mailing=mailing)
    if not errors:
        errors = experiment_errors(mailing=mailing)
    return errors


@transaction.atomic
def mailing_schedule(*, mailing: Mailing, at: datetime | None = None,
                     by: Any = None) -> Mailing:
    """Schedule a draft (or reschedule a scheduled or recurring) mailing; `at=None` means now.

    A mailing with a recurrence becomes `recurring` at the rule's first occurrence from `at`
    on; each occurrence then runs as a mailing of its own (`schedules.mailing_runs_start`).
    `by`, the person scheduling it, needs a second person's approval of a large mailing
    (services.approvals).
    """
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in (State.DRAFT, State.SCHEDULED, State.RECURRING):
        raise ValidationError({"state": f"a {mailing.state} mailing cannot be scheduled"})
    errors = mailing_schedulable_errors(mailing=mailing)
    if not errors and by is not None:
        errors = mailing_approval_errors(mailing=mailing, by=by)
    if errors:
        raise ValidationError(errors)
    budget_warning = mailing_budget_overrun(mailing=mailing)
    if budget_warning and settings.ENGAGE_BUDGET_BLOCK:
        raise ValidationError({"budget": budget_warning})
    at = at or mailing.scheduled_at or timezone.now()
    if mailing.recurrence:
        first = recurrence_next(rule=mailing.recurrence, start=at, after=at, inclusive=True)
        if first is None:
            raise ValidationError({"recurrence": "the rule has no occurrence from the "
                                                 "scheduled time on"})
        mailing.scheduled_at, mailing.state = first, State.RECURRING
    else:
        mailing.scheduled_at, mailing.state = at, State.SCHEDULED
    mailing.save(update_fields=["scheduled_at", "state"])
    # Not a column: what the caller (admin, API) shows the person who scheduled it.
    mailing.budget_warning = budget_warning
    return mailing


def mailing_budget_overrun(*, mailing: Mailing) -> str:
    """'' when the mailing fits in what is left of its campaign's budget (or the campaign has
    no budget); otherwise what it would overspend, for a warning or a refusal
    (ENGAGE_BUDGET_BLOCK). The cost estimate renders SMS samples and counts the audience, so
    it runs only for a campaign with a budget."""
    # Imported here: the estimate's module imports this package (its cascade steps).
    from campaigns.selectors_spend import budget_remaining, campaign_spend
    from communications.selectors.costs import mailing_cost_estimate

    campaign = mailing.campaign if mailing.campaign_id else None
    if campaign is None or campaign.budget is None:
        return ""
    left = budget_remaining(budget=campaign.budget,
                            spent=campaign_spend([campaign.pk])[campaign.pk])
    cost = mailing_cost_estimate(mailing=mailing)["total_cost"]
    if cost <= left:
        return ""
    currency = campaign.currency
    return (f"this mailing would spend an estimated {cost:.2f} {currency} of the "
            f"{max(left, Decimal(0)):.2f} {currency} left in campaign “{campaign}” "
            f"(budget {campaign.budget:.2f} {currency})")


def mailing_start_now(*, mailing: Mailing, by: Any = None) -> Mailing:
    """Schedule for now and start at once instead of waiting for the next scheduler tick."""
    from communications import tasks

    if mailing.recurrence:
        raise ValidationError({"recurrence": "a recurring mailing runs on its schedule; "
                                             "schedule it instead"})
    mailing = mailing_schedule(mailing=mailing, at=timezone.now(), by=by)
    transaction.on_commit(lambda: tasks.prepare_mailing.delay(mailing.pk))
    return mailing


@transaction.atomic
def mailing_cancel(*, mailing: Mailing) -> Mailing:
    """Stop a mailing: messages not yet sent end as `cancelled`; claimed ones finish."""
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in (State.DRAFT, State.SCHEDULED, State.RECURRING, State.PREPARING,
                             State.SENDING, State.PAUSED):
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
    if mailing.failure_reason.startswith(BUDGET_REACHED):
        # Resumed, its campaign's budget raised or not: the cap decides again at the next claim.
        mailing.failure_reason = ""
        mailing.save(update_fields=["failure_reason"])
    transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing.pk))
    return mailing


# --- drafts -----------------------------------------------------------------------------------

# What a marketer may set on a mailing (the state, times of the run and counters are the
# services' own).
MAILING_EDITABLE_FIELDS = ("name", "campaign", "target_group", "static_list", "member",
                           "template", "gateway", "category", "track_engagement",
                           "cascade_after", "scheduled_at",
                           "send_in_member_timezone", "recurrence", "priority", "defer_capped",
                           "message_lifetime", "holdout_percent", "test_percent", "test_hours",
                           "winner_metric")


@transaction.atomic
def mailing_create(*, by: object | None = None, cascade: list | None = None,
                   variants: list | None = None, **fields: object) -> Mailing:
    """A draft mailing; nothing about it is checked for sending until it is scheduled, but
    for its A/B test (`services.experiments`). `cascade`: the (template, gateway) pairs of its
    further channels, in order; `variants`: the templates of its A/B variants, in order."""
    unknown = set(fields) - set(MAILING_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: "cannot be set" for name in sorted(unknown)})
    mailing = Mailing(created_by=by, **fields)
    _mailing_validate(mailing)
    mailing.save()
    if cascade:
        mailing_cascade_set(mailing=mailing, steps=cascade)
    if variants:
        mailing_variants_set(mailing=mailing, templates=variants)
        _experiment_validate(mailing)
    return mailing


@transaction.atomic
def mailing_update(*, mailing: Mailing, cascade: list | None = None,
                   variants: list | None = None, **fields: object) -> Mailing:
    """Change a draft, scheduled or recurring mailing; from `preparing` on it is fixed (its
    audience is frozen into messages and its content is being sent). `cascade` replaces
    its further channels when given, `variants` its A/B variants."""
    unknown = set(fields) - set(MAILING_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: "cannot be set" for name in sorted(unknown)})
    mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
    if mailing.state not in AUDIENCE_EDITABLE_STATES:
        raise ValidationError({"state": f"a {mailing.state} mailing can no longer be changed"})
    for name, value in fields.items():
        setattr(mailing, name, value)
    _mailing_validate(mailing)
    mailing.save(update_fields=list(fields))
    if cascade is not None:
        mailing_cascade_set(mailing=mailing, steps=cascade)
    if variants is not None:
        mailing_variants_set(mailing=mailing, templates=variants)
    _experiment_validate(mailing)
    return mailing


def _experiment_validate(mailing: Mailing) -> None:
    """An A/B test's conflicts (a cascade, member time zones, a recurrence) are refused when
    the mailing is written, not only when it is scheduled: the marketer is at the form."""
    mailing = Mailing.objects.select_related("template").get(pk=mailing.pk)
    errors = experiment_errors(mailing=mailing)
    if errors:
        raise ValidationError(errors)


def _mailing_validate(mailing: Mailing) -> None:
    mailing.full_clean(exclude=["created_by"])
    if mailing.recurrence:
        recurrence_rule(mailing.recurrence, start=mailing.scheduled_at or timezone.now())


# --- the scheduler tick ---------------------------------------------------------------------

def mailings_tick(*, now: datetime | None = None) -> dict[str, Any]:
    """Run by the periodic scheduler: start due mailings and keep sending ones moving.

    All state lives in the database, so a restarted scheduler or worker picks up exactly where
    the last one stopped.
    """
    from communications import tasks

    now = now or timezone.now()
    runs = mailing_runs_start(now=now)
    due = scheduled_due_ids(now=now)
    for mailing_id in due:
        tasks.prepare_mailing.delay(mailing_id)

    in_doubt = messages_mark_unconfirmed_unknown(now=now)
    # A receipt stored while the batch that sent its message had not committed is missed by
    # both the webhook's apply and the batch's own; recent ones are looked at again here.
    late_receipts = receipts_apply(received_after=now - settings.ENGAGE_CLAIM_TIMEOUT)
    fallbacks = cascade_fallbacks_create(now=now)
    winners = experiments_decide(now=now)
    expired = messages_expire(now=now)

    # Parts nobody is freezing (their task was lost with a worker or the broker); a part being
    # frozen is locked and skipped by whoever takes the re-sent task.
    preparing = list(Mailing.objects.filter(state=State.PREPARING).values_list("pk", flat=True))
    for mailing_id in preparing:
        if not mailing_preparing_finish(mailing_id=mailing_id):
            tasks.freeze_audience_part.delay(mailing_id)

    quiet_since = now - settings.ENGAGE_REDISPATCH_AFTER
    stalled = list(
        Mailing.objects.filter(state=State.SENDING)
        .filter(Q(last_dispatch_at__isnull=True) | Q(last_dispatch_at__lt=quiet_since))
        .values_list("pk", flat=True)
    )
    for mailing_id in stalled:
        if not mailing_complete_if_done(mailing_id=mailing_id):
            mailing_dispatch_enqueue(mailing_id=mailing_id)
    return {"runs": runs, "started": due, "in_doubt": in_doubt, "fallbacks": fallbacks,
            "late_receipts": late_receipts, "winners": winners,
            "expired": expired,
            "preparing": preparing, "stalled": stalled}


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
            .select_related("template", "target_group", "static_list", "gateway")
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
    first, last = mailing_audience_bounds(mailing=mailing)
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
            members = (part.first_member_id, part.last_member_id)
            part.written = audience_snapshot(mailing=mailing, members=members)
            part.written += cascade_part_snapshot(mailing=mailing, members=members)
            part.done_at = timezone.now()
            part.save(update_fields=["written", "done_at"])
            written += part.written
    mailing_preparing_finish(mailing_id=mailing_id)
    return written


def _mailing_read_shared(*, mailing_id: int) -> Mailing | None:
    variants = (MailingVariant.objects.filter(mailing=OuterRef("pk")).order_by()
                .values("mailing").annotate(n=Count("pk")).values("n"))
    mailing = (Mailing.objects.select_related("template", "target_group", "static_list",
                                              "gateway")
               .annotate(variant_count=Coalesce(Subquery(variants), 0))
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
            duplicates = duplicate_addresses_skip(mailing_id=mailing_id)
            mailing = Mailing.objects.get(pk=mailing_id)
            if mailing.send_in_member_timezone:
                messages_hold_until_local_time(mailing=mailing)
            transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing_id))
    if started:
        frozen = AudiencePart.objects.filter(mailing_id=mailing_id).aggregate(n=Sum("written"))
        logger.info("mailing %s: audience of %s frozen, %s duplicate addresses skipped",
                    mailing_id, frozen["n"] or 0, duplicates)
    return bool(started)
