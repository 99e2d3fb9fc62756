"""The channel cascade: a mailing may go out on an ordered list of channels (push, then Viber,
then SMS). Each member gets the first channel they can be reached on; with `cascade_after`,
also the next one when the message on the first failed or was not reported delivered in time.

Step 0 is the mailing's own template and gateway; `CascadeStep` rows add the further ones.
Every step is a channel of its own (one message per mailing, member and channel), frozen by
the same snapshot statement as the first, and sent by batches of that channel.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from communications.gateways import GATEWAYS
from communications.models import CascadeStep, Gateway, Mailing, Message, Template
from communications.services.compliance import mailing_lifetime_ends_at
from communications.services.snapshots import SNAPSHOT_CHANNELS, audience_snapshot

logger = logging.getLogger(__name__)

Status = Message.Status
SkipReason = Message.SkipReason

# Skipped for these on one channel, a member may still be reached on the next.
UNREACHABLE = (SkipReason.NO_ADDRESS, SkipReason.SUPPRESSED, SkipReason.OPTED_OUT,
               SkipReason.NOT_SUBSCRIBED, SkipReason.UNCONFIRMED)
# Ended without reaching the member: the next channel is tried (with `cascade_after`).
# `unknown` is not among them: the provider may have delivered it.
NOT_REACHED = (Status.FAILED, Status.REJECTED, Status.UNDELIVERED, Status.BOUNCED,
               Status.EXPIRED)


@dataclass(frozen=True)
class Step:
    position: int
    template: Template
    gateway: Gateway

    @property
    def channel(self) -> str:
        return self.template.channel


def mailing_steps(*, mailing: Mailing) -> list[Step]:
    """The mailing's channels in order: its own template and gateway, then its cascade."""
    steps = []
    if mailing.template_id is not None and mailing.gateway_id is not None:
        steps.append(Step(0, mailing.template, mailing.gateway))
    if mailing.pk is not None:
        steps += [Step(step.position, step.template, step.gateway)
                  for step in mailing.cascade_steps.select_related("template", "gateway")]
    return steps


def mailing_step(*, mailing: Mailing, channel: str | None) -> Step | None:
    """The step sending `channel` (None: the first)."""
    steps = mailing_steps(mailing=mailing)
    if channel is None:
        return steps[0] if steps else None
    return next((step for step in steps if step.channel == channel), None)


def cascade_errors(*, mailing: Mailing) -> dict[str, str]:
    """What is wrong with the further channels, keyed `cascade_steps`."""
    problems = cascade_steps_problems(
        first_channel=mailing.template.channel if mailing.template_id else None,
        steps=mailing_steps(mailing=mailing)[1:])
    return {"cascade_steps": "; ".join(problems)} if problems else {}


def cascade_steps_problems(*, first_channel: str | None, steps: list[Step]) -> list[str]:
    """What is wrong with each of `steps` following a first channel, one line each."""
    problems = []
    seen = {first_channel}
    for step in steps:
        where = f"step {step.position}"
        adapter = GATEWAYS.get(step.gateway.provider)
        if step.channel in seen:
            problems.append(f"{where}: {step.channel} is already a channel of this mailing")
        elif step.channel not in SNAPSHOT_CHANNELS:
            problems.append(f"{where}: {step.channel} mailings are not supported yet")
        elif step.gateway.channel != step.channel:
            problems.append(f"{where}: the gateway sends {step.gateway.channel}, the template "
                            f"is for {step.channel}")
        elif not step.gateway.is_active:
            problems.append(f"{where}: the gateway {step.gateway} is not active")
        elif adapter is None or step.channel not in adapter.channels:
            problems.append(f"{where}: the gateway's provider {step.gateway.provider!r} "
                            f"cannot send {step.channel}")
        seen.add(step.channel)
    return problems


@transaction.atomic
def mailing_cascade_set(*, mailing: Mailing,
                        steps: list[tuple[Template, Gateway]]) -> list[CascadeStep]:
    """Replace the further channels of a mailing not yet frozen, in the order given."""
    mailing = (Mailing.objects.select_for_update(of=("self",)).select_related("template")
               .get(pk=mailing.pk))
    if mailing.state not in (Mailing.State.DRAFT, Mailing.State.SCHEDULED,
                             Mailing.State.RECURRING):
        raise ValidationError({"state": f"a {mailing.state} mailing's channels are fixed"})
    wanted = [Step(position, template, gateway)
              for position, (template, gateway) in enumerate(steps, start=1)]
    problems = cascade_steps_problems(
        first_channel=mailing.template.channel if mailing.template_id else None, steps=wanted)
    if problems:
        raise ValidationError({"cascade_steps": problems})
    mailing.cascade_steps.all().delete()
    return CascadeStep.objects.bulk_create([
        CascadeStep(mailing=mailing, position=step.position, template=step.template,
                    gateway=step.gateway) for step in wanted])


def cascade_part_snapshot(*, mailing: Mailing, members: tuple[int, int]) -> int:
    """After the first channel's rows of a part are written: the members of the part it cannot
    reach get a row on the next channel, and so on down the cascade. Returns rows written."""
    written = 0
    steps = mailing_steps(mailing=mailing)
    for previous, step in zip(steps, steps[1:], strict=False):
        unreachable = Message.objects.filter(
            mailing=mailing, channel=previous.channel, is_test=False,
            member__gte=members[0], member__lte=members[1], status=Status.SKIPPED,
            skip_reason__in=UNREACHABLE,
        ).values("member_id")
        written += audience_snapshot(mailing=mailing, members=members, channel=step.channel,
                                     gateway=step.gateway, among=unreachable)
    return written


def cascade_fallbacks_create(*, now: datetime | None = None) -> dict[int, int]:
    """Give the next channel to members whose message on a channel of a sending mailing did
    not reach them: it ended failed / undelivered / bounced / expired / rejected, or it was
    sent and not reported delivered within the mailing's `cascade_after`. Run by the tick.

    Each mailing is locked (as a claim locks it) while its fallbacks are written, so two
    ticks never write the same member twice; the rows are decided by the snapshot statement,
    consent and suppression included. Returns {mailing id: rows written}.
    """
    from communications.services.dispatch import mailing_dispatch_enqueue

    now = now or timezone.now()
    written: dict[int, int] = {}
    mailings = Mailing.objects.filter(state=Mailing.State.SENDING, cascade_after__isnull=False,
                                      cascade_steps__isnull=False).distinct()
    for mailing_id in list(mailings.values_list("pk", flat=True)):
        with transaction.atomic():
            mailing = (Mailing.objects.select_for_update(no_key=True, of=("self",))
                       .select_related("template", "gateway", "target_group", "static_list")
                       .filter(pk=mailing_id, state=Mailing.State.SENDING).first())
            if mailing is None:
                continue
            ends = mailing_lifetime_ends_at(started_at=mailing.started_at,
                                            lifetime=mailing.message_lifetime)
            if ends is not None and ends <= now:
                continue  # nothing more goes out; expired messages need no next channel
            steps = mailing_steps(mailing=mailing)
            rows = 0
            for previous, step in zip(steps, steps[1:], strict=False):
                rows += audience_snapshot(
                    mailing=mailing, members=(0, 2**63 - 1), channel=step.channel,
                    gateway=step.gateway,
                    among=_not_reached(mailing=mailing, previous=previous, following=step,
                                       now=now))
            if rows:
                written[mailing_id] = rows
                transaction.on_commit(lambda m=mailing_id: mailing_dispatch_enqueue(mailing_id=m))
    if written:
        logger.info("cascade: next channels for %s", written)
    return written


def _not_reached(*, mailing: Mailing, previous: Step, following: Step,
                 now: datetime):
    """Members whose message on `previous` did not reach them and who have none on
    `following` yet."""
    already = Message.objects.filter(mailing=mailing, channel=following.channel, is_test=False,
                                     member_id=OuterRef("member_id"))
    return (Message.objects.filter(mailing=mailing, channel=previous.channel, is_test=False)
            .filter(Q(status__in=NOT_REACHED)
                    | Q(status=Status.SENT, sent_at__lte=now - mailing.cascade_after))
            .filter(~Exists(already))
            .values("member_id"))


def cascade_pending(*, mailing: Mailing, now: datetime) -> bool:
    """Whether a message could still fall back to a later channel: sent, not yet delivered,
    and inside `cascade_after`, or past it with no row on the next channel yet."""
    if mailing.cascade_after is None:
        return False
    steps = mailing_steps(mailing=mailing)
    for previous, step in zip(steps, steps[1:], strict=False):
        waiting = Message.objects.filter(mailing=mailing, channel=previous.channel,
                                         is_test=False, status=Status.SENT,
                                         sent_at__gt=now - mailing.cascade_after)
        if waiting.exists() or _not_reached(mailing=mailing, previous=previous, following=step,
                                            now=now).exists():
            return True
    return False
