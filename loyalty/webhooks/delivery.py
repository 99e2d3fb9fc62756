"""Sending deliveries, the Standard Webhooks way (https://www.standardwebhooks.com/).

Each delivery is a POST of `{"type", "timestamp", "data": {"id", "member", "occurred_at",
"payload", "version"}}` with the headers `webhook-id` (the event id, the same on every retry so
the receiver can drop duplicates), `webhook-timestamp` (Unix seconds) and `webhook-signature`:
`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the subscription's secret; while a
rotated-out secret is still valid, its signature follows, space-separated.

How an answer is classified:
- 2xx: delivered.
- 410 Gone: failed, and the subscription is disabled at once (the receiver said it is gone).
- other 4xx except 408 and 429, and 3xx: failed without retry (the request itself is wrong;
  redirects are not followed, since they could point inside the network).
- 408, 429, 5xx, a timeout, a connection error, a URL that now resolves to a private address
  (DNS rebinding; checked before every call): retried after RETRY_DELAYS, with ±10 % jitter;
  after the last delay the delivery is given up.
A subscription whose attempts have all failed for ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS is disabled
and its owner_email told.

Workers share deliveries by claiming due ones with `SELECT … FOR UPDATE SKIP LOCKED` and a lease
(`claimed_until`); a worker killed mid-call leaves its claims to be taken again after the lease.
For an `ordered` subscription a delivery is claimable only when no earlier delivery of the same
member is still pending.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.ssrf import UnsafeUrl, url_check_public

logger = logging.getLogger(__name__)

RETRY_DELAYS = (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30),
                timedelta(hours=2), timedelta(hours=5), timedelta(hours=10), timedelta(hours=10))
RETRYABLE_4XX = frozenset({408, 429})
EXCERPT_CHARS = 1024
# Small: a claim's lease grows with its size (each call may take the whole timeout).
CLAIM_BATCH = 10


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


def delivery_body(delivery: WebhookDelivery, *, now: datetime) -> bytes:
    event = delivery.event
    member = event.member
    return json.dumps({
        "type": event.type,
        "timestamp": now.isoformat(),
        "data": {
            "id": str(event.id),
            "member": member.external_id if member is not None else None,
            "occurred_at": event.occurred_at.isoformat(),
            "payload": event.payload,
            "version": event.version,
        },
    }, separators=(",", ":"), default=str).encode()


def retry_delay(attempts: int) -> timedelta | None:
    """The wait after the `attempts`-th failed attempt, jittered; None when it was the last."""
    if attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[attempts - 1] * random.uniform(0.9, 1.1)  # noqa: S311


@dataclass
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code >= 500 or code in RETRYABLE_4XX


def _post(client: httpx.Client, delivery: WebhookDelivery, *, now: datetime) -> Outcome:
    subscription = delivery.subscription
    body = delivery_body(delivery, now=now)
    msg_id = str(delivery.event_id)
    headers = {
        "content-type": "application/json",
        "user-agent": "Engage-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(subscription.signing_secrets(now=now), msg_id,
                                              now, body),
    }
    started = time.monotonic()
    try:
        url_check_public(subscription.url)
        # Streamed so that a receiver answering a huge body costs us only the excerpt.
        with client.stream("POST", subscription.url, content=body, headers=headers) as response:
            head = b""
            for chunk in response.iter_bytes():
                head += chunk
                if len(head) >= EXCERPT_CHARS:
                    break
        excerpt = head.decode(response.encoding or "utf-8", errors="replace")[:EXCERPT_CHARS]
    except UnsafeUrl as exc:
        return Outcome(None, 0, error=f"refused: {exc}"[:300])
    except httpx.TimeoutException:
        return Outcome(None, int((time.monotonic() - started) * 1000),
                       error=f"timeout after {settings.ENGAGE_WEBHOOK_TIMEOUT:g}s")
    except httpx.HTTPError as exc:
        return Outcome(None, int((time.monotonic() - started) * 1000),
                       error=f"{type(exc).__name__}: {exc}"[:300])
    return Outcome(response.status_code, int((time.monotonic() - started) * 1000), excerpt)


def deliveries_claim(*, limit: int = CLAIM_BATCH) -> list[int]:
    """Ids of due deliveries this worker now holds for a lease (skipping others' claims)."""
    now = timezone.now()
    earlier_pending = WebhookDelivery.objects.filter(
        subscription=OuterRef("subscription"), member_id=OuterRef("member_id"),
        id__lt=OuterRef("id"), status=WebhookDelivery.Status.PENDING)
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
                    subscription__active=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .filter(Q(subscription__ordered=False) | Q(member_id__isnull=True)
                    | ~Exists(earlier_pending))
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit])
        # Long enough for every claimed call to time out, so a slow receiver never has a live
        # worker's claims taken over; a dead worker's wait that long plus the margin.
        lease = timedelta(seconds=settings.ENGAGE_WEBHOOK_TIMEOUT * len(ids)
                          + settings.ENGAGE_WEBHOOK_LEASE_MARGIN)
        WebhookDelivery.objects.filter(id__in=ids).update(claimed_until=now + lease)
    return ids


def _subscription_fail(subscription_id: int, *, now: datetime, reason: str | None) -> None:
    """Count a failed attempt against the subscription; disable it for `reason` (410), or when
    it has failed for too long, telling its owner."""
    subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription_id)
    if subscription.failing_since is None:
        subscription.failing_since = now
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
    subscription.save(update_fields=["failing_since", "active", "disabled_at",
                                     "disabled_reason"])


def _owner_tell(subscription: WebhookSubscription) -> None:
    try:
        send_mail(
            subject=f"Webhook disabled: {subscription.url}",
            message=(f"Engage stopped sending events to {subscription.url} "
                     f"(subscription {subscription.pk}): {subscription.disabled_reason}.\n\n"
                     "Fix the endpoint, then switch the subscription back on; deliveries that "
                     "failed meanwhile can be replayed."),
            from_email=None, recipient_list=[subscription.owner_email])
    except Exception:  # noqa: BLE001  (the disabling stands; the log says who was not told)
        logger.exception("could not tell %s that webhook %s was disabled",
                         subscription.owner_email, subscription.pk)


def _record(delivery: WebhookDelivery, outcome: Outcome, *, now: datetime) -> None:
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=now, status_code=outcome.status_code,
            duration_ms=outcome.duration_ms, response_excerpt=outcome.excerpt,
            error=outcome.error)
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        delivery.claimed_until = None
        if outcome.succeeded:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.completed_at = now
            WebhookSubscription.objects.filter(pk=delivery.subscription_id,
                                               failing_since__isnull=False).update(
                failing_since=None)
        else:
            delay = retry_delay(delivery.attempts) if outcome.retryable else None
            if delay is None:
                delivery.status = WebhookDelivery.Status.FAILED
                delivery.completed_at = now
            else:
                delivery.next_attempt_at = now + delay
            _subscription_fail(delivery.subscription_id, now=now,
                               reason="the receiver answered 410 Gone"
                               if outcome.status_code == 410 else None)
        delivery.save(update_fields=["attempts", "last_status_code", "last_error",
                                     "claimed_until", "status", "completed_at",
                                     "next_attempt_at"])


def deliveries_send(ids: list[int]) -> int:
    """Make one attempt for each claimed delivery; how many succeeded."""
    deliveries = (WebhookDelivery.objects.filter(id__in=ids)
                  .select_related("subscription", "event__member").order_by("id"))
    succeeded = 0
    timeout = settings.ENGAGE_WEBHOOK_TIMEOUT
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for delivery in deliveries:
            if not delivery.subscription.active:
                # Disabled by an earlier delivery of this batch (410, too long failing).
                WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=None)
                continue
            now = timezone.now()
            outcome = _post(client, delivery, now=now)
            _record(delivery, outcome, now=now)
            succeeded += outcome.succeeded
    return succeeded


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
