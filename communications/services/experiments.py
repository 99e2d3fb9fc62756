"""Control groups and A/B tests of mailings.

**Control group.** `Mailing.holdout_percent` of the members who would be sent to are skipped
(`skipped: holdout`) by the audience snapshot itself; the lift of the rest over them is read by
`selectors.experiments.mailing_lift`.

**A/B test.** A mailing with 2 to 5 `MailingVariant`s splits the members it would send to:
`test_percent` of them (drawn per member by a hash of mailing and member, like the holdout) are
split evenly among the variants, each message rendered with its variant's template; the rest
is frozen queued but held (`held_for = ab_test`, not before the year 9999). Once `test_hours`
have passed since the start, `experiments_decide` (run by the scheduler tick) picks the variant
with the highest `winner_metric` (open, click or conversion rate of its messages that reached
their member) and releases the rest, which is then sent with the winner's template. A tie,
including a test where nothing was sent yet, goes to the lowest position (A before B): the
first variant is usually the current one, and a test that proves nothing should keep it.

An A/B test cannot be combined with a channel cascade, sending in each member's time zone (both
set `not_before` on the same rows) or a recurrence (each run is a mailing of its own).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from communications.models import (
    VARIANTS_MAX,
    VARIANTS_MIN,
    Mailing,
    MailingVariant,
    Message,
    Template,
    variant_label,
)
from communications.selectors.experiments import VariantResult, variant_results

logger = logging.getLogger(__name__)

State = Mailing.State
# A mailing's variants can change while its audience is not frozen.
VARIANTS_EDITABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING)


def variants_problems(*, channel: str | None, templates: Sequence[Template]) -> list[str]:
    """What is wrong with a mailing's variants (`templates` in position order), one line each;
    none for no variants at all (no A/B test)."""
    if not templates:
        return []
    problems = []
    if not VARIANTS_MIN <= len(templates) <= VARIANTS_MAX:
        problems.append(f"an A/B test has {VARIANTS_MIN} to {VARIANTS_MAX} variants, "
                        f"not {len(templates)}")
    for position, template in enumerate(templates, start=1):
        if channel is not None and template.channel != channel:
            problems.append(f"variant {variant_label(position)}: the template is for "
                            f"{template.channel}, the mailing sends {channel}")
    return problems


def experiment_errors(*, mailing: Mailing) -> dict[str, str]:
    """What keeps a mailing's A/B test from running, keyed by the field to fix: its variants,
    and the features it cannot be combined with."""
    if mailing.pk is None:
        return {}
    templates = [variant.template for variant in
                 mailing.variants.select_related("template").order_by("position")]
    if not templates:
        return {}
    errors: dict[str, str] = {}
    problems = variants_problems(
        channel=mailing.template.channel if mailing.template_id else None, templates=templates)
    if problems:
        errors["variants"] = "; ".join(problems)
    if mailing.kind != Mailing.Kind.REGULAR:
        errors["variants"] = "a trigger mailing cannot be A/B tested"
    if mailing.cascade_steps.exists():
        errors["cascade_steps"] = "an A/B tested mailing cannot have a channel cascade"
    if mailing.send_in_member_timezone:
        errors["send_in_member_timezone"] = ("an A/B tested mailing cannot be sent in each "
                                             "member's time zone")
    if mailing.recurrence:
        errors["recurrence"] = "an A/B tested mailing cannot recur"
    return errors


@transaction.atomic
def mailing_variants_set(*, mailing: Mailing,
                         templates: Sequence[Template]) -> list[MailingVariant]:
    """Replace the A/B variants of a mailing not yet frozen: one per template, in order (A,
    B, ...); an empty list ends the A/B test."""
    mailing = (Mailing.objects.select_for_update(of=("self",)).select_related("template")
               .get(pk=mailing.pk))
    if mailing.state not in VARIANTS_EDITABLE_STATES:
        raise ValidationError({"variants": f"a {mailing.state} mailing's variants are fixed"})
    problems = variants_problems(
        channel=mailing.template.channel if mailing.template_id else None, templates=templates)
    if problems:
        raise ValidationError({"variants": problems})
    mailing.variants.all().delete()
    return MailingVariant.objects.bulk_create([
        MailingVariant(mailing=mailing, position=position, template=template)
        for position, template in enumerate(templates, start=1)])


def winner_pick(*, results: Sequence[VariantResult], metric: str) -> VariantResult:
    """The variant with the highest rate by `metric`; on a tie the lowest position. A variant
    with nothing sent counts as rate 0."""
    return max(sorted(results, key=lambda result: result.position),
               key=lambda result: result.rate(metric) or 0.0)


def experiments_decide(*, now: datetime | None = None) -> dict[int, str]:
    """Choose the winner of every sending A/B test whose test period is over and release the
    rest of its audience; run by the scheduler tick. Returns {mailing id: winner's label}."""
    now = now or timezone.now()
    due = [pk for pk, started_at, hours in
           Mailing.objects.filter(state=State.SENDING, winner__isnull=True,
                                  started_at__isnull=False, variants__isnull=False)
           .distinct().values_list("pk", "started_at", "test_hours")
           if started_at + timedelta(hours=hours) <= now]
    decided = {}
    for mailing_id in due:
        winner = mailing_winner_choose(mailing_id=mailing_id, now=now)
        if winner is not None:
            decided[mailing_id] = winner.label
    return decided


def mailing_winner_choose(*, mailing_id: int, now: datetime | None = None
                          ) -> MailingVariant | None:
    """Pick the A/B test's winner by the mailing's metric, record it, and release the held
    rest of the audience to be sent with its template. None if the mailing is not a sending
    A/B test without a winner (another tick chose it first).

    The mailing row is locked as a claim locks it, so no batch is being claimed while the
    rest is released; the release is one UPDATE of the held rows.
    """
    from communications.services.dispatch import mailing_dispatch_enqueue

    now = now or timezone.now()
    with transaction.atomic():
        mailing = (Mailing.objects.select_for_update(of=("self",))
                   .filter(pk=mailing_id, state=State.SENDING, winner__isnull=True).first())
        if mailing is None:
            return None
        results = variant_results(mailing=mailing, until=now)
        if not results:
            return None
        best = winner_pick(results=results, metric=mailing.winner_metric)
        mailing.winner = MailingVariant.objects.get(mailing=mailing, position=best.position)
        mailing.winner_chosen_at = now
        mailing.save(update_fields=["winner", "winner_chosen_at"])
        released = Message.objects.filter(
            mailing_id=mailing_id, status=Message.Status.QUEUED,
            held_for=Message.HoldReason.AB_TEST,
        ).update(not_before=None, held_for="", updated_at=now)
        transaction.on_commit(lambda: mailing_dispatch_enqueue(mailing_id=mailing_id))
    logger.info("mailing %s: A/B winner %s by %s (%s), %s held messages released",
                mailing_id, best.label, mailing.winner_metric,
                {result.label: result.rate(mailing.winner_metric) for result in results},
                released)
    return mailing.winner


def mailing_test_end_now(*, mailing: Mailing) -> Mailing:
    """End a sending mailing's A/B test early, as the marketer asks: the winner by its metric
    so far, sent to the rest at once."""
    if mailing_winner_choose(mailing_id=mailing.pk) is None:
        raise ValidationError("this mailing has no A/B test waiting for its winner")
    mailing.refresh_from_db()
    return mailing
