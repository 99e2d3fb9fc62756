"""Changes to webhook subscriptions and deliveries: each through its function here.

A subscription's connector credentials are checked by its connector
(loyalty/webhooks/connectors/) and stored sealed; they are never handed back whole."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from loyalty.webhooks.connectors import connector_get
from loyalty.webhooks.models import (
    WebhookDelivery,
    WebhookSubscription,
    credentials_seal,
    secret_seal,
    webhook_secret_new,
)

EDITABLE = ("connector", "url", "description", "event_types", "active", "ordered",
            "owner_email")


def subscription_credentials_clean(*, connector: str, raw: dict[str, Any]) -> dict[str, str]:
    """The credentials to store for `connector`, or a ValidationError keyed by each wrong
    credential's name."""
    return connector_get(connector).credentials_clean(raw)


def subscription_create(*, by: Any | None = None, credentials: dict[str, Any] | None = None,
                        **fields: Any) -> tuple[WebhookSubscription, str]:
    """A new subscription (validated) and its secret, which is not readable again."""
    secret = webhook_secret_new()
    subscription = WebhookSubscription(
        **{key: fields[key] for key in EDITABLE if key in fields},
        secret_encrypted=secret_seal(secret), created_by=by,
        # Only events from now on: a new receiver is not flooded with the past.
        relayed_until=timezone.now())
    subscription.full_clean()
    subscription.credentials_encrypted = credentials_seal(subscription_credentials_clean(
        connector=subscription.connector, raw=credentials or {}))
    subscription.save()
    return subscription, secret


@transaction.atomic
def subscription_update(*, subscription: WebhookSubscription,
                        credentials: dict[str, Any] | None = None, **fields: Any
                        ) -> WebhookSubscription:
    """Change what was given; credentials not given stay as they are while the connector
    does (a new connector needs its own)."""
    connector_before, url_before = subscription.connector, subscription.url
    for key in EDITABLE:
        if key in fields:
            setattr(subscription, key, fields[key])
    if fields.get("active") and subscription.disabled_at is not None:
        # Switched back on: failures before this no longer count towards disabling it.
        subscription.disabled_at = None
        subscription.disabled_reason = ""
        subscription.failing_since = None
        subscription.probe_at = None  # probed at once
    if (subscription.connector, subscription.url) != (connector_before, url_before):
        # Another receiver: it has to prove itself with a probe before getting whole batches,
        # and is probed at once, whatever the old one's backoff.
        subscription.healthy_since = None
        subscription.probe_at = None
    subscription.full_clean()
    if credentials is None:
        credentials = (subscription.credentials()
                       if subscription.connector == connector_before else {})
    subscription.credentials_encrypted = credentials_seal(subscription_credentials_clean(
        connector=subscription.connector, raw=credentials))
    subscription.save()
    return subscription


@transaction.atomic
def subscription_secret_rotate(*, subscription: WebhookSubscription) -> str:
    """A new secret; the current one keeps signing (beside it) for
    ENGAGE_WEBHOOK_PREVIOUS_SECRET_HOURS so the receiver can switch without losing a call."""
    secret = webhook_secret_new()
    subscription.previous_secret_encrypted = subscription.secret_encrypted
    subscription.previous_secret_expires_at = timezone.now() + timedelta(
        hours=settings.ENGAGE_WEBHOOK_PREVIOUS_SECRET_HOURS)
    subscription.secret_encrypted = secret_seal(secret)
    subscription.save(update_fields=["secret_encrypted", "previous_secret_encrypted",
                                     "previous_secret_expires_at"])
    return secret


@transaction.atomic
def deliveries_replay(*, ids: list[int]) -> int:
    """Send these deliveries again, whatever became of them (their attempts stay logged), at
    once: a subscription waiting for its failed probe's retry is probed now."""
    WebhookSubscription.objects.filter(
        pk__in=WebhookDelivery.objects.filter(id__in=ids).values("subscription_id"),
        probe_at__isnull=False).update(probe_at=None)
    return WebhookDelivery.objects.filter(id__in=ids).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(),
        claimed_until=None, completed_at=None)
