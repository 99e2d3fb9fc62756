"""What the integration API keeps: API keys, idempotency keys, custom event types, vouchers.

Defined here and imported by loyalty.models, so they belong to the `loyalty` app.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
from django.db import models

from members.models import Member


class ApiKey(models.Model):
    """A credential of the loyalty engine, a shop or a POS. Only the SHA-256 of the key is
    stored: the key itself is shown once, when it is created or rotated."""

    class Scope(models.TextChoices):
        MEMBERS_WRITE = "members:write"
        ORDERS_WRITE = "orders:write"
        VOUCHERS_WRITE = "vouchers:write"
        EVENTS_WRITE = "events:write"
        EVENTS_READ = "events:read"

    name = models.CharField(max_length=100, help_text="Who uses it: \"POS Riga\", \"Shop\".")
    prefix = models.CharField(max_length=16, unique=True, editable=False,
                              help_text="The start of the key, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyKey(models.Model):
    """The first answer to a write sent with an `Idempotency-Key`, replayed to its retries."""

    # "key:<api key id>" or "user:<staff user id>": a key is only ever compared to its caller's.
    owner = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotencykey_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]

    def __str__(self) -> str:
        return f"{self.owner}: {self.key}"


class CustomEventType(models.Model):
    """An event type of the program's own, beside the catalog (Event.Type), whose payloads
    must satisfy a JSON Schema."""

    name = models.CharField(
        max_length=64, unique=True,
        validators=[RegexValidator(r"^[A-Z][A-Z0-9_]*$",
                                   "Capital letters, digits and underscores, like ORDER_PLACED.")])
    description = models.TextField(blank=True)
    payload_schema = models.JSONField(
        default=dict, blank=True,
        help_text="A JSON Schema (draft 2020-12) every payload of this type must satisfy; "
                  "{} accepts any payload.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from loyalty.models import Event

        errors: dict[str, Any] = {}
        if self.name in Event.Type.values:
            errors["name"] = "This is a type of the catalog already."
        try:
            jsonschema.Draft202012Validator.check_schema(self.payload_schema)
        except jsonschema.SchemaError as exc:
            path = "/".join(str(part) for part in exc.path)
            errors["payload_schema"] = f"Not a valid JSON Schema at /{path}: {exc.message}"
        if errors:
            raise ValidationError(errors)


class Voucher(models.Model):
    class Kind(models.TextChoices):
        AMOUNT = "amount", "Amount off"
        PERCENT = "percent", "Percent off"
        POINTS = "points", "Points"
        GIFT = "gift", "Gift"

    code = models.CharField(max_length=64, unique=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="vouchers")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.AMOUNT)
    value = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # "N days before a voucher expires" triggers scan the ones still open.
            models.Index(fields=["expires_at"], condition=models.Q(redeemed_at__isnull=True),
                         name="voucher_open_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.code
