"""Outgoing webhooks: a subscription says where events go, a delivery is one event owed to one
subscription, and an attempt is one HTTP call made for a delivery (the log a support person
reads). Imported by loyalty.models, so these are the loyalty app's models.

A subscription's `connector` says how an event is put on the wire: `standard` POSTs it signed
to the subscription's URL; the others map it onto a marketing platform's own API (Klaviyo,
Mailchimp, Segment) with the credentials sealed in `credentials_encrypted`
(loyalty/webhooks/connectors/)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from config.fernet import engage_fernet
from loyalty.webhooks.ssrf import validate_public_url

SECRET_PREFIX = "whsec_"


def webhook_secret_new() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def secret_seal(secret: str) -> str:
    return engage_fernet().encrypt(secret.encode()).decode("ascii") if secret else ""


def secret_open(token: str) -> str:
    return engage_fernet().decrypt(token.encode("ascii")).decode() if token else ""


def credentials_seal(credentials: dict[str, str]) -> str:
    return secret_seal(json.dumps(credentials, sort_keys=True)) if credentials else ""


def credentials_open(token: str) -> dict[str, Any]:
    return json.loads(secret_open(token)) if token else {}


class WebhookSubscription(models.Model):
    class Connector(models.TextChoices):
        STANDARD = "standard", "Standard Webhooks (signed POST to the URL)"
        KLAVIYO = "klaviyo", "Klaviyo (Events API)"
        MAILCHIMP = "mailchimp", "Mailchimp (member events)"
        SEGMENT = "segment", "Twilio Segment (track)"

    connector = models.CharField(max_length=20, choices=Connector.choices,
                                 default=Connector.STANDARD)
    url = models.URLField(max_length=2000, blank=True, validators=[validate_public_url],
                          help_text="Where events are POSTed (standard webhooks); it must "
                                    "resolve to a public address. A platform connector calls "
                                    "the platform's own endpoint instead.")
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, blank=True,
                                   help_text="The event types sent; empty: every type.")
    # Fernet tokens (config/fernet.py); the plain secret is shown once, when it is made.
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A connector's credentials (API key, audience id...): a JSON object, sealed like the
    # secret, and never shown again in full.
    credentials_encrypted = models.TextField(blank=True, editable=False)
    active = models.BooleanField(default=True)
    ordered = models.BooleanField(
        default=False, help_text="A member's next event waits until the previous one was "
                                 "delivered or given up.")
    owner_email = models.EmailField(blank=True,
                                    help_text="Told when the subscription is disabled.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The relay's position in the event log: events recorded after it are not yet relayed.
    relayed_until = models.DateTimeField(editable=False)
    # Since when every attempt has failed (none succeeded in between); None while healthy.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Since the first success after it was created, pointed elsewhere or began failing (a
    # disabled one switched back on has failed); None while unproven, when a batch sends it
    # one probe and holds the rest for the probe's answer (loyalty/webhooks/delivery.py).
    healthy_since = models.DateTimeField(null=True, blank=True, editable=False)
    # While unproven after a failed probe: no delivery of it is claimed before then (the
    # probe's retry), so a dead receiver's new deliveries wait out the backoff too.
    probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.description or self.url or self.get_connector_display()

    def clean(self) -> None:
        if self.connector == self.Connector.STANDARD and not self.url:
            raise ValidationError({"url": "A standard webhook needs the URL to POST to."})
        if self.connector != self.Connector.STANDARD and self.url:
            raise ValidationError({"url": f"The {self.get_connector_display()} connector "
                                          "calls the platform's own endpoint; leave the URL "
                                          "empty."})

    def credentials(self) -> dict[str, Any]:
        return credentials_open(self.credentials_encrypted)

    def signing_secrets(self, *, now) -> list[str]:
        """The secrets every delivery is signed with now: the current one, and the previous
        one while a rotation lets receivers catch up."""
        found = [secret_open(self.secret_encrypted)]
        if (self.previous_secret_encrypted and self.previous_secret_expires_at
                and self.previous_secret_expires_at > now):
            found.append(secret_open(self.previous_secret_encrypted))
        return found


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE,
                                     related_name="deliveries", db_index=False)
    event = models.ForeignKey("loyalty.Event", on_delete=models.CASCADE, related_name="+")
    # The event's member, copied so an ordered subscription finds a member's earlier
    # deliveries in one index.
    member_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A worker's lease: a delivery claimed by a worker that died is claimed again after it.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"],
                                    name="webhookdelivery_once_per_event"),
        ]
        indexes = [
            # In the claim's order, so a claim reads its batch off the index instead of
            # sorting every due delivery (a backlog's share one next_attempt_at).
            models.Index(fields=["next_attempt_at", "id"], name="webhookdelivery_due_idx",
                         condition=models.Q(status="pending")),
            models.Index(fields=["subscription", "member_id", "id"],
                         name="webhookdelivery_member_idx",
                         condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.subscription_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE,
                                 related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    response_excerpt = models.CharField(max_length=1024, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
