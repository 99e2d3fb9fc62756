"""Sending deliveries: a worker claims a batch of due ones, its connector turns each into a
request (loyalty/webhooks/connectors/: Standard Webhooks signing, Klaviyo, Mailchimp, Segment),
the batch goes out concurrently (loyalty/webhooks/transport.py), and the outcomes are written
back in a few set-based statements.

How an answer is classified, whatever the connector:
- 2xx: delivered.
- 410 Gone: failed, and the subscription is disabled at once (the receiver said it is gone).
- other 4xx except 408 and 429, and 3xx: failed without retry (the request itself is wrong, or
  its credentials are; redirects are not followed, since they could point inside the network).
- an event the connector cannot express (Mailchimp without the member's email): failed without
  a call and without retry, the reason logged as the attempt's error.
- 408, 429, 5xx, a timeout, a connection error, a URL that now resolves to a private address
  (DNS rebinding; checked before every batch's calls, once per host): retried after
  RETRY_DELAYS, with ±10 % jitter, or after the receiver's Retry-After when it asks for longer
  (up to RETRY_AFTER_MAX); after the last delay the delivery is given up.
A subscription whose attempts have all failed for ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS is disabled
and its owner_email told.

A subscription not yet proven (`healthy_since` None: new, pointed elsewhere, or failing, which
includes one switched back on after it was disabled) gets one call per batch, its probe; its
other claimed deliveries are held, no attempt counted, and follow the probe's answer: due at
once after a success, left pending behind a disabled subscription after a 410, due when the
probe is retried after a failure (RETRY_DELAYS[0] when it is not). So a receiver that is gone
is called once, not a batch's worth of times, and a dead one one call at a time instead of a
batch per retry step. Until that retry nothing of the subscription is claimed (`probe_at`),
so the deliveries of events that arrive meanwhile wait for it too, and a dead receiver is
called on the retry schedule, not once per claim. A proven subscription's batch goes out at
once, but once one of its calls is answered 410 its calls not yet started are not made: those
deliveries too stay pending, no attempt counted, behind the subscription the 410 disables (the
calls already in flight, up to ENGAGE_WEBHOOK_IN_FLIGHT, are answered and recorded).

Workers share deliveries by claiming due ones with `SELECT … FOR UPDATE SKIP LOCKED` and a lease
(`claimed_until`) long enough for the batch's calls to time out, ENGAGE_WEBHOOK_IN_FLIGHT at a
time; a worker killed mid-batch leaves its claims to be taken again after the lease. For an
`ordered` subscription a delivery is claimable only when no earlier delivery of the same member
is still pending, so a batch holds at most one of a member's deliveries to it and sending the
batch concurrently keeps the member's order.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from loyalty.webhooks.connectors import connector_get
from loyalty.webhooks.connectors.base import (
    EventNotSendable,
    MemberIdentity,
    OutgoingEvent,
    OutgoingRequest,
    Target,
)
from loyalty.webhooks.connectors.standard import signature_header  # noqa: F401  (re-exported)
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.ssrf import UnsafeUrl, UrlChecks
from loyalty.webhooks.transport import requests_send

logger = logging.getLogger(__name__)

RETRY_DELAYS = (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30),
                timedelta(hours=2), timedelta(hours=5), timedelta(hours=10), timedelta(hours=10))
RETRYABLE_4XX = frozenset({408, 429})
# A receiver's Retry-After is honoured up to the longest step of the schedule: a larger one
# (or a date far ahead) would park the delivery beyond the retries it is owed.
RETRY_AFTER_MAX = max(RETRY_DELAYS)
# Four rounds of ENGAGE_WEBHOOK_IN_FLIGHT calls at the default 64: large enough that claiming
# and recording cost little per delivery, small enough that the lease (four timeouts plus the
# margin) stays short when a worker dies.
CLAIM_BATCH = 256


def retry_delay(attempts: int, *, retry_after: float | None = None) -> timedelta | None:
    """The wait after the `attempts`-th failed attempt, jittered, or the receiver's
    Retry-After when that is longer (up to RETRY_AFTER_MAX); None when it was the last."""
    if attempts > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[attempts - 1] * random.uniform(0.9, 1.1)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, min(timedelta(seconds=retry_after), RETRY_AFTER_MAX))
    return delay


@dataclass
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""
    # Failed before any call, for a reason a retry cannot change.
    permanent: bool = False
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return not self.permanent and (code is None or code >= 500 or code in RETRYABLE_4XX)


@dataclass
class _Attempt:
    delivery_id: int
    subscription_id: int
    attempts: int  # before this one
    attempted_at: datetime
    # Its subscription is unproven: it goes out only as the batch's probe to it.
    probation: bool = False
    request: OutgoingRequest | None = None
    outcome: Outcome | None = None


def deliveries_claim(*, limit: int = CLAIM_BATCH) -> list[int]:
    """Ids of due deliveries this worker now holds for a lease (skipping others' claims)."""
    now = timezone.now()
    earlier_pending = WebhookDelivery.objects.filter(
        subscription=OuterRef("subscription"), member_id=OuterRef("member_id"),
        id__lt=OuterRef("id"), status=WebhookDelivery.Status.PENDING)
    # The active subscriptions as lists of ids rather than a join: without a join the claim
    # can read its batch in the due index's order instead of sorting a whole backlog. One
    # waiting for its failed probe's retry has nothing due before then.
    active = list(WebhookSubscription.objects.filter(active=True).exclude(probe_at__gt=now)
                  .values_list("pk", "ordered"))
    ordered = [pk for pk, is_ordered in active if is_ordered]
    unordered = [pk for pk, is_ordered in active if not is_ordered]
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .filter(Q(subscription_id__in=unordered)
                    | Q(subscription_id__in=ordered)
                    & (Q(member_id__isnull=True) | ~Exists(earlier_pending)))
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit])
        # Long enough for every round of calls to time out, so a slow receiver never has a
        # live worker's claims taken over; a dead worker's wait that long plus the margin.
        rounds = math.ceil(len(ids) / settings.ENGAGE_WEBHOOK_IN_FLIGHT)
        lease = timedelta(seconds=settings.ENGAGE_WEBHOOK_TIMEOUT * rounds
                          + settings.ENGAGE_WEBHOOK_LEASE_MARGIN)
        WebhookDelivery.objects.filter(id__in=ids).update(claimed_until=now + lease)
    return ids


def _subscription_fail(subscription_id: int, *, now: datetime, reason: str | None) -> None:
    """Count failed attempts against the subscription; disable it for `reason` (410), or when
    it has failed for too long, telling its owner."""
    subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription_id)
    if subscription.failing_since is None:
        subscription.failing_since = now
    subscription.healthy_since = None
    limit = timedelta(days=settings.ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS)
    if reason is None and now - subscription.failing_since >= limit:
        reason = (f"every delivery failed since {subscription.failing_since:%Y-%m-%d %H:%M} "
                  f"UTC ({settings.ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS:g} days)")
    if reason is not None and subscription.active:
        subscription.active = False
        subscription.disabled_at = now
        subscription.disabled_reason = reason[:300]
        if subscription.owner_email:
            transaction.on_commit(lambda: _owner_tell(subscription))
    subscription.save(update_fields=["failing_since", "healthy_since", "active", "disabled_at",
                                     "disabled_reason"])


def _owner_tell(subscription: WebhookSubscription) -> None:
    where = subscription.url or subscription.get_connector_display()
    try:
        send_mail(
            subject=f"Webhook disabled: {where}",
            message=(f"Engage stopped sending events to {where} "
                     f"(subscription {subscription.pk}): {subscription.disabled_reason}.\n\n"
                     "Fix the endpoint, then switch the subscription back on; deliveries that "
                     "failed meanwhile can be replayed."),
            from_email=None, recipient_list=[subscription.owner_email])
    except Exception:  # noqa: BLE001  (the disabling stands; the log says who was not told)
        logger.exception("could not tell %s that webhook %s was disabled",
                         subscription.owner_email, subscription.pk)


def _held_release(held: list[_Attempt], *, after: dict[int, datetime | None]) -> None:
    """Let go of the deliveries held behind their subscription's probe, no attempt counted:
    due again at `after[subscription]`, or as they were (None)."""
    due_again: dict[datetime | None, list[int]] = defaultdict(list)
    for attempt in held:
        due_again[after.get(attempt.subscription_id)].append(attempt.delivery_id)
    for when, ids in due_again.items():
        changes = {"claimed_until": None} if when is None else {
            "claimed_until": None, "next_attempt_at": when}
        WebhookDelivery.objects.filter(id__in=ids).update(**changes)


def _outcomes_record(attempts: list[_Attempt], *, now: datetime,
                     held: list[_Attempt]) -> None:
    """Every attempt of the batch logged, and its delivery and subscription moved on, in a few
    statements whatever the batch's size: one insert of the attempts, one update per success
    status code, one bulk update of the failures, one statement per subscription, and one
    per probe's answer for the deliveries `held` behind it."""
    succeeded: dict[int, list[int]] = defaultdict(list)
    failures: list[WebhookDelivery] = []
    healthy: set[int] = set()
    failing: dict[int, str | None] = {}
    # Subscription on probation -> when the deliveries held behind its failed probe are due.
    probe_failed: dict[int, datetime | None] = {}
    for attempt in attempts:
        outcome = attempt.outcome
        assert outcome is not None
        if outcome.succeeded:
            succeeded[outcome.status_code].append(attempt.delivery_id)
            healthy.add(attempt.subscription_id)
            continue
        count = attempt.attempts + 1
        delay = retry_delay(count, retry_after=outcome.retry_after) if outcome.retryable else None
        next_attempt_at = now + delay if delay else attempt.attempted_at
        failures.append(WebhookDelivery(
            pk=attempt.delivery_id, attempts=count, last_status_code=outcome.status_code,
            last_error=outcome.error, claimed_until=None,
            status=WebhookDelivery.Status.PENDING if delay else WebhookDelivery.Status.FAILED,
            completed_at=None if delay else now, next_attempt_at=next_attempt_at))
        gone = "the receiver answered 410 Gone" if outcome.status_code == 410 else None
        failing[attempt.subscription_id] = failing.get(attempt.subscription_id) or gone
        if attempt.probation and attempt.request is not None:
            # Behind a disabled subscription they stay as they are, for a replay.
            probe_failed[attempt.subscription_id] = None if gone else (
                next_attempt_at if delay else now + RETRY_DELAYS[0])
    with transaction.atomic():
        WebhookAttempt.objects.bulk_create([WebhookAttempt(
            delivery_id=a.delivery_id, attempted_at=a.attempted_at,
            status_code=a.outcome.status_code, duration_ms=a.outcome.duration_ms,
            response_excerpt=a.outcome.excerpt, error=a.outcome.error)
            for a in attempts if a.outcome is not None], batch_size=1000)
        for code, ids in succeeded.items():
            WebhookDelivery.objects.filter(id__in=ids).update(
                attempts=F("attempts") + 1, last_status_code=code, last_error="",
                claimed_until=None, status=WebhookDelivery.Status.SUCCEEDED, completed_at=now)
        WebhookDelivery.objects.bulk_update(failures, [
            "attempts", "last_status_code", "last_error", "claimed_until", "status",
            "completed_at", "next_attempt_at"], batch_size=500)
        if healthy:
            WebhookSubscription.objects.filter(pk__in=healthy).filter(
                Q(failing_since__isnull=False) | Q(healthy_since__isnull=True)
            ).update(failing_since=None, healthy_since=now, probe_at=None)
        for subscription_id, when in probe_failed.items():
            if when is not None and subscription_id not in healthy:
                WebhookSubscription.objects.filter(pk=subscription_id).update(probe_at=when)
        _held_release(held, after=probe_failed)
        for subscription_id, reason in sorted(failing.items()):
            # A success in the same batch ends the failing streak; a 410 disables anyway.
            if subscription_id not in healthy or reason is not None:
                _subscription_fail(subscription_id, now=now, reason=reason)


def _targets(subscriptions: dict[int, WebhookSubscription], *, now: datetime
             ) -> dict[int, Target]:
    return {pk: Target(url=s.url, credentials=s.credentials(),
                       secrets=s.signing_secrets(now=now) if s.connector == "standard" else [])
            for pk, s in subscriptions.items()}


def _attempts_prepare(ids: list[int]) -> list[_Attempt]:
    """The claimed deliveries that still go out, each with its request built (or the reason
    it cannot be); claims of subscriptions disabled meanwhile are let go. The events and their
    members' identities come in one query, the subscriptions in another."""
    rows = list(WebhookDelivery.objects.filter(id__in=ids).order_by("id").values_list(
        "id", "subscription_id", "attempts", "event_id", "event__type", "event__occurred_at",
        "event__payload", "event__version", "event__member_id", "event__member__external_id",
        "event__member__email", "event__member__phone"))
    subscriptions = WebhookSubscription.objects.in_bulk({row[1] for row in rows})
    inactive = [row[0] for row in rows if not subscriptions[row[1]].active]
    if inactive:
        # Disabled since the claim (a 410, too long failing, switched off).
        WebhookDelivery.objects.filter(id__in=inactive).update(claimed_until=None)
    active = {pk: s for pk, s in subscriptions.items() if s.active}
    now = timezone.now()
    targets = _targets(active, now=now)
    checks = UrlChecks()
    prepared: list[_Attempt] = []
    for (pk, subscription_id, attempts, event_id, type_, occurred_at, payload, version,
         member_id, external_id, email, phone) in rows:
        if subscription_id not in active:
            continue
        attempt = _Attempt(pk, subscription_id, attempts, now,
                           probation=active[subscription_id].healthy_since is None)
        event = OutgoingEvent(
            id=str(event_id), type=type_, occurred_at=occurred_at, payload=payload,
            version=version, member=None if member_id is None else MemberIdentity(
                external_id=external_id, email=email or "", phone=phone or ""))
        connector = connector_get(active[subscription_id].connector)
        try:
            attempt.request = connector.request_build(event, target=targets[subscription_id],
                                                      now=now)
            checks.check(attempt.request.url)
        except EventNotSendable as exc:
            attempt.request = None
            attempt.outcome = Outcome(None, 0, error=f"not sent: {exc}"[:300], permanent=True)
        except UnsafeUrl as exc:
            attempt.request = None
            attempt.outcome = Outcome(None, 0, error=f"refused: {exc}"[:300])
        prepared.append(attempt)
    return prepared


def _probes_pick(attempts: list[_Attempt]) -> tuple[list[_Attempt], list[_Attempt]]:
    """The calls to make, and the deliveries held back: of an unproven subscription's calls
    only one is made, the most tried (then the oldest), so that a probe that failed is the
    one tried again and the receiver's backoff grows with it."""
    calls = [a for a in attempts if a.request is not None and not a.probation]
    unproven: dict[int, list[_Attempt]] = defaultdict(list)
    for attempt in attempts:
        if attempt.request is not None and attempt.probation:
            unproven[attempt.subscription_id].append(attempt)
    held: list[_Attempt] = []
    for waiting in unproven.values():
        probe = min(waiting, key=lambda a: (-a.attempts, a.delivery_id))
        calls.append(probe)
        held.extend(a for a in waiting if a is not probe)
    return calls, held


def deliveries_send(ids: list[int]) -> int:
    """Make one attempt for each claimed delivery, concurrently (one only for each unproven
    subscription, the rest held for its answer); how many succeeded."""
    attempts = _attempts_prepare(ids)
    calls, held = _probes_pick(attempts)
    answers = requests_send([a.request for a in calls], timeout=settings.ENGAGE_WEBHOOK_TIMEOUT,
                            in_flight=settings.ENGAGE_WEBHOOK_IN_FLIGHT,
                            scopes=[a.subscription_id for a in calls])
    for attempt, answer in zip(calls, answers, strict=True):
        if answer is None:
            # Not called: its receiver answered 410 to another call of the batch first.
            held.append(attempt)
            continue
        attempt.outcome = Outcome(answer.status_code, answer.duration_ms, answer.excerpt,
                                  answer.error, retry_after=answer.retry_after)
    # Held deliveries are the ones left without an outcome: no call, nothing to record.
    _outcomes_record([a for a in attempts if a.outcome is not None], held=held,
                     now=timezone.now())
    return sum(1 for a in attempts if a.outcome is not None and a.outcome.succeeded)


def deliveries_send_due(*, max_seconds: float = 30.0) -> int:
    """Claim and send due deliveries until none is left or `max_seconds` passed; the attempts
    made."""
    deadline = time.monotonic() + max_seconds
    made = 0
    while time.monotonic() < deadline:
        ids = deliveries_claim()
        if not ids:
            break
        deliveries_send(ids)
        made += len(ids)
    return made
