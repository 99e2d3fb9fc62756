from __future__ import annotations

import zoneinfo

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import models


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"
    PUSH = "push", "Push"
    VIBER = "viber", "Viber"
    SOCIAL = "social", "Social network"


def validate_e164(value: str) -> None:
    """Phones are stored only in E.164 (`+4915112345678`); normalizing is the service's job."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{value!r} is not a phone number in E.164 form: {exc}") from exc
    if not phonenumbers.is_valid_number(number) or value != phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164
    ):
        raise ValidationError(f"{value!r} is not a valid phone number in E.164 form")


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone")


class Member(models.Model):
    external_id = models.CharField(
        max_length=64, help_text="The member's id in the loyalty engine."
    )
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(
        max_length=16, blank=True, validators=[validate_e164],
        help_text="E.164, for example +4915112345678.",
    )
    language = models.CharField(max_length=8, default="en")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        # Declared here rather than with unique=/db_index= on the fields: on PostgreSQL those
        # also build a second, pattern-ops index per column that every insert pays for and
        # no query uses.
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="member_external_id_unique")
        ]
        indexes = [
            models.Index(fields=["email"], name="member_email_idx"),
            models.Index(fields=["phone"], name="member_phone_idx"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name or self.external_id} ({self.external_id})"


class Consent(models.Model):
    """The current consent of a member for one channel and purpose.

    Absent means never given: only a `granted` row makes a member marketable on a channel.
    """

    class Purpose(models.TextChoices):
        MARKETING = "marketing", "Marketing"
        SERVICE = "service", "Service"

    class State(models.TextChoices):
        GRANTED = "granted", "Granted"
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Source(models.TextChoices):
        IMPORT = "import", "Import"
        ACCOUNT_PAGE = "account_page", "Account page"
        APP = "app", "Mobile app"
        UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
        SMS_STOP = "sms_stop", "SMS STOP keyword"
        SUPPORT = "support", "Support agent"
        API = "api", "API"
        ADMIN = "admin", "Admin"

    # Covered by the unique (member, channel, purpose) index.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="consents", db_index=False
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.MARKETING)
    state = models.CharField(max_length=16, choices=State.choices)
    source = models.CharField(max_length=32, choices=Source.choices)
    recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "channel", "purpose"], name="consent_one_per_member_channel"
            )
        ]
        # Segment and snapshot queries ask "is there a granted row for this member and channel".
        indexes = [
            models.Index(
                fields=["channel", "purpose", "member"],
                condition=models.Q(state="granted"),
                name="consent_granted_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.channel}/{self.purpose}: {self.state}"
