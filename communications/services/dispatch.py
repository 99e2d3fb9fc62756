"""Sending a mailing's messages: batches claimed atomically, screened for compliance, rendered,
sent through the gateway within its rate limit in chunks, and each chunk's results written back
in bulk as it comes.

Every message is sent at most once per (mailing, member, channel): a batch claims its rows
before it sends and marks each chunk handed over just before it leaves; a claim never confirmed
ends `unknown` (not resent) if it was handed over, and goes back to the queue if it was not.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from campaigns.selectors_spend import campaign_spend
from communications.circuits import circuit_open_seconds
from communications.gateways import (
    GatewayError,
    OutboundMessage,
    SendResult,
)
from communications.models import Gateway, Mailing, Message, MessageStatusChange
from communications.ratelimit import gateway_bucket
from communications.renderers import (
    CompiledTemplate,
    member_context,
    member_value_paths,
    template_rich_content,
)
from communications.services.cascade import cascade_pending, mailing_step
from communications.services.compliance import (
    MailingRules,
    Screening,
    batch_screen,
    mailing_lifetime_ends_at,
    messages_expire,
)
from communications.services.sending import (
    RATE_WAIT_S,
    circuit_count,
    gateway_in_service,
    gateway_rate,
    gateway_send,
)
from communications.services.statuses import (
    StatusChange,
    changes_record,
    messenger_accounts_deactivate,
    push_devices_deactivate,
    receipts_apply,
)
from communications.tracking import tracked_html
from members.models import Channel
from members.services.keywords import sms_stop_apply
from members.unsubscribe import unsubscribe_urls

logger = logging.getLogger(__name__)

Source = MessageStatusChange.Source

Status = Message.Status
SkipReason = Message.SkipReason
State = Mailing.State
# A transient error retries the message until it has been tried this often.
MAX_ATTEMPTS = 3
# ... after waiting this long after its first failure, twice that after its second, and so
# on up to the cap, unless the provider said how long (Retry-After).
RETRY_BACKOFF_S = 30.0
RETRY_BACKOFF_CAP_S = 900.0


def messages_mark_unconfirmed_unknown(*, now: datetime | None = None) -> int:
    """Claims never confirmed within the claim timeout: the worker died mid-send. What it had
    handed to the provider may have reached it, so it ends `unknown` (listed on the mailing),
    never resent; returns how many. What a mailing's batch had not handed over yet never left:
    it goes back to the queue, its attempt not counted (cancelled, if the mailing was)."""
    now = now or timezone.now()
    detail = "claimed by a worker that never confirmed the send; not resent"
    with transaction.atomic():
        rows = list(Message.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status=Status.SENDING, claimed_at__lt=now - settings.ENGAGE_CLAIM_TIMEOUT,
        ).values_list("pk", "handed_at", "is_test", "mailing__state"))
        # Only a mailing's batches fence their sends; a test or transactional message is
        # handed over as soon as it is claimed.
        never_left = [(pk, state) for pk, handed_at, is_test, state in rows
                      if handed_at is None and not is_test and state is not None]
        kept = {pk for pk, _ in never_left}
        ids = [pk for pk, *_ in rows if pk not in kept]
        Message.objects.filter(pk__in=ids).update(
            status=Status.UNKNOWN, error_code="unconfirmed", error=detail, updated_at=now)
        changes_record(changes=[StatusChange(pk, Status.UNKNOWN, now, "unconfirmed", detail)
                                for pk in ids], source=Source.SWEEPER, recorded_at=now)
        _claims_give_back(rows=never_left, now=now)
    return len(ids)


def _claims_give_back(*, rows: Sequence[tuple[int, str]], now: datetime) -> None:
    detail = ("claimed by a worker that stopped before handing it to the provider; back in "
              "the queue, no attempt counted")
    for ending, ids in ((Status.QUEUED, [pk for pk, state in rows if state != State.CANCELLED]),
                        (Status.CANCELLED, [pk for pk, state in rows
                                            if state == State.CANCELLED])):
        messages_release(ids=ids, detail=detail, now=now, to=ending, source=Source.SWEEPER)


def mailing_dispatch_enqueue(*, mailing_id: int, now: datetime | None = None) -> int:
    """Enqueue enough batch tasks to cover the messages due now; each claims its own rows.

    Messages held for later (quiet hours, a deferral) are not counted: no task is spent on
    them before their time. The scheduler tick comes back to a sending mailing every minute or
    so (`ENGAGE_REDISPATCH_AFTER`), and picks up a hold that has ended then.
    """

    now = now or timezone.now()
    due = (messages_due(Message.objects.filter(mailing_id=mailing_id, status=Status.QUEUED,
                                               is_test=False), now=now)
           .order_by().values("channel").annotate(n=Count("pk")).values_list("channel", "n"))
    Mailing.objects.filter(pk=mailing_id).update(last_dispatch_at=now)
    batches = 0
    for channel, n in due:
        for _ in range(math.ceil(n / settings.ENGAGE_BATCH_SIZE)):
            batch_enqueue(mailing_id=mailing_id, channel=channel)
            batches += 1
    if not batches:
        mailing_complete_if_done(mailing_id=mailing_id)
    return batches


def batch_enqueue(*, mailing_id: int, channel: str, countdown: float = 0) -> None:
    """One batch task on the channel's own queue, so a slow provider never holds up the
    batches of another channel (workers take every queue unless started with `-Q`)."""
    from communications import tasks

    tasks.dispatch_batch.apply_async((mailing_id, channel), queue=dispatch_queue(channel),
                                     countdown=countdown or None)


def dispatch_queue(channel: str) -> str:
    return f"dispatch.{channel}"


def messages_due(messages: QuerySet[Message], *, now: datetime) -> QuerySet[Message]:
    """Those not held for later: no `not_before`, or one that has passed."""
    return messages.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))


def messages_claim(*, mailing_id: int, limit: int, now: datetime | None = None,
                   channel: str | None = None) -> list[int]:
    """Atomically take up to `limit` due queued messages of a sending mailing for this worker,
    screened for compliance; returns the ids to send.

    The mailing row is locked first, as pause and cancel lock it before they touch messages:
    a claim waits for a cancel in progress (and then finds the mailing cancelled) instead of
    holding message rows the cancel waits for while it waits for the mailing row (a deadlock
    the 1M-member benchmark hit). Claims of one mailing take turns; each lasts milliseconds.
    SKIP LOCKED still keeps them off rows another transaction holds.

    In the same transaction the candidates are screened (`compliance.batch_screen`): members
    who withdrew consent or whose address was suppressed since the snapshot, or who are at a
    frequency cap, are skipped with the reason; members inside quiet hours, or deferred by a
    cap, are held (left queued with `not_before`, no attempt counted). Only the rest are
    claimed. After the mailing's message lifetime nothing is claimed (`messages_expire`).
    """
    return _claim(mailing_id=mailing_id, limit=limit, now=now or timezone.now(),
                  channel=channel)[0]


def _claim(*, mailing_id: int, limit: int, now: datetime,
           channel: str | None = None) -> tuple[list[int], Screening]:
    """Claim messages of `channel` (None: the mailing's first channel)."""
    screening = Screening()
    with transaction.atomic():
        mailing = (
            Mailing.objects.select_for_update(no_key=True, of=("self",))
            .filter(pk=mailing_id, state=State.SENDING)
            .values("template__channel", "category_id", "priority", "defer_capped",
                    "started_at", "message_lifetime", "campaign_id", "campaign__budget",
                    "campaign__currency")
            .first()
        )
        if mailing is None:
            return [], screening
        if _budget_reached(mailing_id=mailing_id, mailing=mailing):
            return [], screening
        ends = mailing_lifetime_ends_at(started_at=mailing["started_at"],
                                        lifetime=mailing["message_lifetime"])
        if ends is not None and ends <= now:
            return [], screening
        channel = channel or mailing["template__channel"]
        candidates = list(
            messages_due(Message.objects.select_for_update(skip_locked=True)
                         .filter(mailing_id=mailing_id, channel=channel, status=Status.QUEUED,
                                 is_test=False),
                         now=now)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if not candidates:
            return [], screening
        screening = batch_screen(
            rules=MailingRules(mailing_id=mailing_id, channel=channel,
                               category_id=mailing["category_id"],
                               priority=mailing["priority"],
                               defer_capped=mailing["defer_capped"], lifetime_ends_at=ends),
            ids=candidates, now=now)
        _screening_record(screening=screening, now=now)
        if screening.send:
            Message.objects.filter(pk__in=screening.send).update(
                status=Status.SENDING, claimed_at=now, handed_at=None,
                attempts=F("attempts") + 1, held_for="", updated_at=now,
            )
        Mailing.objects.filter(pk=mailing_id).update(last_dispatch_at=now)
    return screening.send, screening


# The cap reads a campaign's spend at most once every ENGAGE_BUDGET_CHECK_SECONDS in a worker
# process: the aggregate over the campaign's messages measured 0.15 s at 1M messages, and it
# runs with the mailing's row locked, where every other worker's claim would wait for it batch
# after batch. A campaign may overspend by what its mailings send in that time.
_spend_read: dict[int, tuple[float, Any]] = {}
# The start of the reason a mailing paused by the cap carries (resuming it clears it).
BUDGET_REACHED = "budget reached"


def _campaign_spent(campaign_id: int) -> Any:
    now = time.monotonic()
    read = _spend_read.get(campaign_id)
    if read is None or now - read[0] >= settings.ENGAGE_BUDGET_CHECK_SECONDS:
        read = _spend_read[campaign_id] = (now, campaign_spend([campaign_id])[campaign_id])
    return read[1]


def _budget_reached(*, mailing_id: int, mailing: dict[str, Any]) -> bool:
    """The budget cap: a mailing whose campaign has spent its budget claims nothing more and
    is paused, the reason on it (a marketer may raise the budget and resume it). Called with
    the mailing row locked, so a pause or cancel cannot cross it; only for a campaign with a
    budget, its spend read as _campaign_spent keeps it."""
    budget = mailing["campaign__budget"]
    if budget is None or not settings.ENGAGE_BUDGET_CAP:
        return False
    spent = _campaign_spent(mailing["campaign_id"])
    if spent < budget:
        return False
    currency = mailing["campaign__currency"]
    reason = f"{BUDGET_REACHED}: spent {spent:.2f} of {budget:.2f} {currency}"
    Mailing.objects.filter(pk=mailing_id, state=State.SENDING).update(
        state=State.PAUSED, failure_reason=reason)
    logger.info("mailing %s paused: %s", mailing_id, reason)
    return True


def _screening_record(*, screening: Screening, now: datetime) -> None:
    """Write what the screening decided, with its history: an UPDATE per skip reason, one for
    all the holds, one INSERT of the changes."""
    for reason, ids in screening.skipped.items():
        Message.objects.filter(pk__in=ids).update(status=Status.SKIPPED, skip_reason=reason,
                                                  updated_at=now)
    adapt = connection.ops.adapt_datetimefield_value
    _messages_set(rows=[(pk, adapt(not_before), held_for)
                        for pk, not_before, held_for in screening.held],
                  columns=("not_before", "held_for"), fixed={"updated_at": now})
    changes_record(changes=screening.changes(now=now), source=Source.COMPLIANCE,
                   recorded_at=now)


def messages_release(*, ids: Sequence[int], detail: str, now: datetime | None = None,
                     to: str = Status.QUEUED, source: str = Source.DISPATCH) -> int:
    """Give claimed messages that never reached the provider back to the queue (or end them
    `to` another status: cancelled, when their mailing was), their attempt not counted (the
    rate limit had no slot for them in time, a throttle ended the batch, their worker died
    before handing them over)."""
    if not ids:
        return 0
    now = now or timezone.now()
    with transaction.atomic():
        released = list(Message.objects.select_for_update()
                        .filter(pk__in=ids, status=Status.SENDING)
                        .values_list("pk", flat=True))
        Message.objects.filter(pk__in=released).update(
            status=to, claimed_at=None, attempts=Greatest(F("attempts") - 1, 0),
            updated_at=now)
        changes_record(changes=[StatusChange(pk, to, now, "not_sent", detail)
                                for pk in released], source=source, recorded_at=now)
    return len(released)


def message_batch_dispatch(*, mailing_id: int, channel: str | None = None,
                           batch_size: int | None = None, now: datetime | None = None,
                           rate_wait_s: float = RATE_WAIT_S) -> dict[str, int]:
    """Claim one batch of the mailing's messages on `channel` (None: its first channel),
    render it with that channel's template, send it through that channel's gateway within the
    gateway's rate limit (`rate_per_second` in its settings), record the results.

    `now` is the moment the claim decides for (quiet hours, caps, what is due); `rate_wait_s`
    how long the batch waits for its rate-limit tokens.
    """
    # A caller's own `now` (a simulation, a test) stamps the results too, so the sends a
    # frequency cap counts (sent_at) are on the same clock as the claims that decided them.
    decided_for = now
    now = now or timezone.now()
    mailing = (Mailing.objects.select_related("template", "gateway")
               .filter(pk=mailing_id).first())
    step = mailing_step(mailing=mailing, channel=channel) if mailing is not None else None
    if step is None:
        return {"claimed": 0}
    channel = step.channel
    gateway = gateway_in_service(gateway=step.gateway)
    if gateway is None:
        # Its circuit is open and no backup can take the batch: claim nothing, come back when
        # it closes (the messages keep their attempts).
        wait = max(1.0, circuit_open_seconds(gateway_id=step.gateway.pk))
        transaction.on_commit(lambda: batch_enqueue(mailing_id=mailing_id, channel=channel,
                                                    countdown=wait))
        return {"claimed": 0, "circuit_open": 1}
    limit = batch_size or settings.ENGAGE_BATCH_SIZE
    rate = gateway_rate(gateway=gateway)
    if rate is not None:
        limit = min(limit, max(1, math.ceil(rate * rate_wait_s)))
    ids, screening = _claim(mailing_id=mailing_id, limit=limit, now=now, channel=channel)
    screened = screening.counts()
    # Batch tasks are enqueued per ENGAGE_BATCH_SIZE due messages; a full batch cut down to
    # the rate leaves work no task covers, so it hands on to another task.
    hand_on = rate is not None and len(ids) + sum(screened.values()) >= limit
    if not ids:
        ends = mailing_lifetime_ends_at(started_at=mailing.started_at,
                                        lifetime=mailing.message_lifetime)
        if ends is not None and ends <= now:
            messages_expire(now=now, mailing_id=mailing_id)
        if hand_on:
            transaction.on_commit(lambda: batch_enqueue(mailing_id=mailing_id, channel=channel))
        mailing_complete_if_done(mailing_id=mailing_id)
        return {"claimed": 0, **screened}
    rows = list(
        Message.objects.filter(pk__in=ids).order_by("pk")
        .values("pk", "member_id", "address", "attempts", "variant", *member_value_paths())
    )
    templates = _batch_templates(mailing=mailing, step=step)
    links = (unsubscribe_urls(member_ids=[row["member_id"] for row in rows],
                              channel=Channel.EMAIL, mailing_id=mailing_id)
             if channel == Channel.EMAIL else {})
    outbound: list[OutboundMessage] = []
    render_failures: list[SendResult] = []
    for row in rows:
        link = links.get(row["member_id"])
        template, rich_content = templates.get(row["variant"], templates[None])
        try:
            rendered = template.render(member_context(row), unsubscribe_url=link)
        except Exception as exc:  # noqa: BLE001  (a template failing for one member fails only them)
            render_failures.append(SendResult(row["pk"], error=GatewayError(
                f"template failed for this member: {exc}", code="render", permanent=True)))
            continue
        html_body = rendered.html_body
        if html_body and mailing.track_engagement and channel == Channel.EMAIL:
            html_body = tracked_html(html_body, message_id=row["pk"])
        outbound.append(OutboundMessage(
            message_id=row["pk"], address=row["address"], subject=rendered.subject,
            body=rendered.body, html_body=html_body,
            headers=list_unsubscribe_headers(link) if link else {}, **rich_content,
        ))
    bucket = (gateway_bucket(gateway_id=gateway.pk, rate=rate)
              if rate is not None else None)
    attempts = {row["pk"]: row["attempts"] for row in rows}
    counts = messages_record_results(results=render_failures, attempts=attempts,
                                     gateway_id=gateway.pk, now=decided_for)
    handover = BatchHandover(claimed_at=now, attempts=attempts, gateway_id=gateway.pk,
                              stamp=decided_for)
    sent = gateway_send(gateway=gateway, batch=outbound, bucket=bucket,
                        deadline=time.monotonic() + rate_wait_s, handover=handover)
    circuit_count(gateway=gateway, results=sent)
    answered = {result.message_id for result in sent}
    results = render_failures + sent
    counts = {key: n + handover.counts[key] for key, n in counts.items()}
    failed_over = bool(counts["retry"]) and _retries_fail_over(
        mailing_id=mailing_id, channel=channel, gateway=gateway, primary=step.gateway, now=now)
    released = messages_release(
        ids=[m.message_id for m in outbound if m.message_id not in answered],
        detail="not handed to the provider: the gateway's rate limit had no slot for it "
               "within the batch's wait, or a throttle reply or a lost connection ended the "
               "batch; back in the queue, no attempt counted")
    if counts.get("retry"):
        retry_after = (0 if failed_over else
                       max((r.error.retry_after or 0) for r in results if r.error)
                       or RETRY_BACKOFF_S)
        transaction.on_commit(lambda: batch_enqueue(mailing_id=mailing_id, channel=channel,
                                                    countdown=retry_after))
    # Messages given back are work no task covers either; a second's pause keeps a batch that
    # got no token at all (the bucket's Redis unreachable) from spinning.
    if released or hand_on:
        transaction.on_commit(lambda: batch_enqueue(mailing_id=mailing_id, channel=channel,
                                                    countdown=1 if released else 0))
    mailing_complete_if_done(mailing_id=mailing_id)
    outcome = {"claimed": len(ids), **counts, **screened}
    if released:
        outcome["released"] = released
    return outcome


def _retries_fail_over(*, mailing_id: int, channel: str, gateway: Gateway, primary: Gateway,
                       now: datetime) -> bool:
    """When this batch's failures opened the circuit of the gateway it went through and the
    backup now takes the mailing's batches, the messages waiting out a retry are due at once:
    their backoff was for a provider that might recover, and the backup is up now. (Holds for
    quiet hours or caps carry `held_for` and keep their time.)"""
    if gateway.pk != primary.pk:
        return False
    in_service = gateway_in_service(gateway=primary)
    if in_service is None or in_service.pk == primary.pk:
        return False
    Message.objects.filter(mailing_id=mailing_id, channel=channel, status=Status.QUEUED,
                           is_test=False, held_for="", not_before__gt=now
                           ).update(not_before=now, updated_at=now)
    return True


def messages_hand_over(*, ids: Sequence[int], claimed_at: datetime) -> set[int]:
    """Mark claimed messages handed over to the provider, now; returns those it marked.

    A claim is still its batch's only while it is `sending` with the claim's time and not yet
    handed over: the sweeper may have given it back, and another batch claimed it again, while
    its worker stood still. One UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+): this runs
    before every chunk a batch sends."""
    if not ids:
        return set()
    qn = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {qn(Message._meta.db_table)} SET {qn('handed_at')} = %s "
            f"WHERE {qn('id')} IN ({', '.join(['%s'] * len(ids))}) AND {qn('status')} = %s "
            f"AND {qn('claimed_at')} = %s AND {qn('handed_at')} IS NULL RETURNING {qn('id')}",
            [adapt(timezone.now()), *ids, Status.SENDING, adapt(claimed_at)])
        return {row[0] for row in cursor.fetchall()}


@dataclass
class BatchHandover:
    """The batch's side of `gateway_send`'s handover: each chunk marked handed over (only the
    rows this claim still holds) just before it leaves, each chunk's results written as they
    come. A worker killed mid-batch thus leaves only the chunk in flight in doubt, and the
    sweeper gives the rest of its claim back to the queue."""

    claimed_at: datetime
    attempts: dict[int, int]
    gateway_id: int
    stamp: datetime | None
    counts: Counter[str] = field(default_factory=Counter)

    def handing(self, chunk: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        ours = messages_hand_over(ids=[message.message_id for message in chunk],
                                  claimed_at=self.claimed_at)
        return [message for message in chunk if message.message_id in ours]

    def answered(self, results: Sequence[SendResult]) -> None:
        self.counts.update(messages_record_results(
            results=results, attempts=self.attempts, gateway_id=self.gateway_id, now=self.stamp))


def _batch_templates(*, mailing: Mailing, step: Any
                     ) -> dict[int | None, tuple[CompiledTemplate, dict[str, Any]]]:
    """The templates a batch renders with, compiled once, with their rich content: by A/B
    variant position, and under None the one for messages without a variant. That is the
    step's own, or on an A/B tested mailing's first channel the winner's: the rest of its
    audience is held until the winner is chosen, so it is never claimed before."""
    def compiled(template: Any) -> tuple[CompiledTemplate, dict[str, Any]]:
        return (CompiledTemplate(subject=template.subject, body=template.body,
                                 html_body=template.html_body),
                template_rich_content(template))

    templates: dict[int | None, tuple[CompiledTemplate, dict[str, Any]]] = {}
    if step.position == 0:
        variants = {variant.position: variant
                    for variant in mailing.variants.select_related("template")}
        templates.update({position: compiled(variant.template)
                          for position, variant in variants.items()})
        winner = next((variant for variant in variants.values()
                       if variant.pk == mailing.winner_id), None)
        if winner is not None:
            templates[None] = templates[winner.position]
    templates.setdefault(None, compiled(step.template))
    return templates


def list_unsubscribe_headers(link: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click: bulk senders to Gmail and Yahoo must carry both.

    Providers honour one-click only on an https link in a DKIM-signed message, so
    ENGAGE_PUBLIC_URL must be https in production and the relay must sign these headers.
    """
    return {"List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def messages_record_results(*, results: Sequence[SendResult], attempts: dict[int, int],
                            gateway_id: int | None, now: datetime | None = None
                            ) -> dict[str, int]:
    """Write a batch's outcomes back in bulk: one UPDATE per outcome kind and one INSERT of
    their history, none per row; then apply receipts that arrived before the send was known.

    `now` stamps them (sent_at, the changes' times); the real clock when not given."""
    now = now or timezone.now()
    sent: list[tuple[Any, ...]] = []
    failed: list[tuple[Any, ...]] = []
    in_doubt: list[tuple[Any, ...]] = []
    # Ids to retry by the provider's Retry-After, or by exponential backoff: until it has
    # passed no batch claims them (`not_before`), or the next batch task would retry them at
    # once and spend their attempts inside the provider's throttle window or outage.
    retry: dict[float, list[int]] = {}
    changes: list[StatusChange] = []
    for result in results:
        error = result.error
        if error is None:
            sent.append((result.message_id, result.provider_id, result.cost))
            changes.append(StatusChange(result.message_id, Status.SENT, now))
            continue
        if error.in_doubt:
            in_doubt.append((result.message_id, error.code, error.message))
            status = Status.UNKNOWN
        elif not error.permanent and attempts.get(result.message_id, 0) < MAX_ATTEMPTS:
            delay = error.retry_after or retry_backoff_s(attempts.get(result.message_id, 1))
            retry.setdefault(delay, []).append(result.message_id)
            status = Status.QUEUED  # the claim is given back, to be tried again
        else:
            failed.append((result.message_id, error.code, error.message))
            status = Status.FAILED
        changes.append(StatusChange(result.message_id, status, now, error.code, error.message))
    with transaction.atomic():
        _messages_set(rows=sent, columns=("provider_id", "cost"),
                      fixed={"status": Status.SENT, "sent_at": now, "updated_at": now,
                             "gateway_id": gateway_id})
        _messages_set(rows=failed, columns=("error_code", "error"),
                      fixed={"status": Status.FAILED, "updated_at": now,
                             "gateway_id": gateway_id})
        if failed:
            push_devices_deactivate(results=results)
            messenger_accounts_deactivate(results=results)
            _opt_outs_record(results=results)
        _messages_set(rows=in_doubt, columns=("error_code", "error"),
                      fixed={"status": Status.UNKNOWN, "updated_at": now,
                             "gateway_id": gateway_id})
        for delay, ids in retry.items():
            Message.objects.filter(pk__in=ids, status=Status.SENDING).update(
                status=Status.QUEUED, claimed_at=None, updated_at=now,
                not_before=now + timedelta(seconds=delay))
        changes_record(changes=changes, source=Source.DISPATCH, recorded_at=now)
        if sent and gateway_id is not None:
            receipts_apply(gateway_id=gateway_id,
                           provider_ids=[provider_id for _, provider_id, _ in sent if provider_id])
    return {"sent": len(sent), "failed": len(failed), "unknown": len(in_doubt),
            "retry": sum(len(ids) for ids in retry.values())}


def _opt_outs_record(*, results: Sequence[SendResult]) -> int:
    """Withdraw SMS consent where the provider refused because the member opted out with it
    (Twilio 21610: they replied STOP to its number); returns the addresses. Rare, so one
    ledger event per member, as an inbound STOP records it."""
    ids = [result.message_id for result in results
           if result.error is not None and result.error.opted_out]
    if not ids:
        return 0
    rows = list(Message.objects.filter(pk__in=ids, channel=Channel.SMS).exclude(address="")
                .values_list("address", "gateway__name").distinct())
    for phone, gateway_name in rows:
        sms_stop_apply(phone=phone, text="STOP (reported by the SMS provider)",
                       gateway_name=gateway_name or "")
    return len(rows)


def retry_backoff_s(attempts: int) -> float:
    """How long a message that failed transiently on its `attempts`-th try waits."""
    return min(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_S * 2 ** max(0, attempts - 1))


# Columns whose VALUES may all be NULL need a type, or PostgreSQL reads them as text.
_COLUMN_CASTS = {"cost": "NUMERIC"}
_ROWS_PER_STATEMENT = 1000


def _messages_set(*, rows: Sequence[tuple[Any, ...]], columns: Sequence[str],
                  fixed: dict[str, Any]) -> None:
    """UPDATE message rows from a VALUES list: `rows` are (id, *columns) tuples.

    Django's bulk_update builds a CASE per column per row, which costs more than the send
    itself at a few hundred rows; a joined VALUES list is one cheap statement (PostgreSQL and
    SQLite 3.33+ both speak UPDATE ... FROM).
    """
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    names = ", ".join(qn(name) for name in ("id", *columns))
    assignments = ", ".join(
        [f"{qn(c)} = CAST(v.{qn(c)} AS {_COLUMN_CASTS[c]})" if c in _COLUMN_CASTS
         else f"{qn(c)} = v.{qn(c)}" for c in columns]
        + [f"{qn(c)} = %s" for c in fixed]
    )
    row_sql = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            cursor.execute(
                f"WITH v ({names}) AS (VALUES {', '.join([row_sql] * len(chunk))}) "
                f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{qn('id')} = v.{qn('id')}",
                [value for row in chunk for value in row] + list(fixed.values()),
            )


def mailing_complete_if_done(*, mailing_id: int) -> bool:
    """Mark a sending mailing completed once no message is queued or claimed, and none could
    still fall back to the next channel of its cascade."""
    if Message.objects.filter(
        mailing_id=mailing_id, status__in=[Status.QUEUED, Status.SENDING], is_test=False
    ).exists():
        return False
    mailing = Mailing.objects.filter(pk=mailing_id, cascade_after__isnull=False).first()
    if mailing is not None and cascade_pending(mailing=mailing, now=timezone.now()):
        return False
    # A trigger mailing stays sending for the events still to come until it is cancelled.
    return bool(
        Mailing.objects.filter(pk=mailing_id, state=State.SENDING, kind=Mailing.Kind.REGULAR)
        .update(state=State.COMPLETED, completed_at=timezone.now())
    )
