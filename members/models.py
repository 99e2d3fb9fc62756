from __future__ import annotations

import zoneinfo

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


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


class CustomAttribute(models.Model):
    """A typed key the program declares for `Member.custom_attributes` (validated on write)."""

    class Type(models.TextChoices):
        STRING = "string", "Text"
        INTEGER = "integer", "Whole number"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "Yes / no"
        DATE = "date", "Date"
        CHOICE = "choice", "One of a list"

    key = models.SlugField(max_length=64, unique=True,
                           help_text="Name in imports, the API and rules (letters, digits, _).")
    label = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.STRING)
    choices = models.JSONField(default=list, blank=True,
                               help_text='For "one of a list": the allowed values.')

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.label} ({self.key}: {self.type})"


class Member(models.Model):
    class Gender(models.TextChoices):
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"
        ERASED = "erased", "Erased"

    external_id = models.CharField(
        max_length=64, help_text="The member's id in the loyalty engine."
    )
    # db_default on the optional columns lets COPY-based imports and seeds name only the
    # columns they have.
    first_name = models.CharField(max_length=100, blank=True, db_default="")
    last_name = models.CharField(max_length=100, blank=True, db_default="")
    email = models.EmailField(blank=True, db_default="")
    email_verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the member confirmed the address (double opt-in)."
    )
    phone = models.CharField(
        max_length=16, blank=True, validators=[validate_e164], db_default="",
        help_text="E.164, for example +4915112345678.",
    )
    phone_verified_at = models.DateTimeField(null=True, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=8, choices=Gender.choices, blank=True, db_default="")
    language = models.CharField(max_length=8, default="en", db_default="en")
    timezone = models.CharField(max_length=64, default="UTC", db_default="UTC",
                                validators=[validate_timezone])
    city = models.CharField(max_length=100, blank=True, db_default="")
    region = models.CharField(max_length=100, blank=True, db_default="")
    country = models.CharField(max_length=2, blank=True, db_default="",
                               help_text="ISO 3166-1 alpha-2, for example DE.")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the member joined the program.")
    registration_source = models.CharField(max_length=64, blank=True, db_default="",
                                           help_text="Shop, app, POS, import...")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE,
                              db_default=Status.ACTIVE)
    custom_attributes = models.JSONField(default=dict, blank=True, db_default={})
    # The member's own quiet hours (members.services.preferences), in their time zone: no
    # marketing on any channel between them; both blank when they set none.
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        # Declared here rather than with unique=/db_index= on the fields: on PostgreSQL those
        # also build a second, pattern-ops index per column that every insert pays for and
        # no query uses.
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="member_external_id_unique"),
            models.CheckConstraint(
                condition=(models.Q(latitude__isnull=True) & models.Q(longitude__isnull=True))
                | (models.Q(latitude__gte=-90, latitude__lte=90)
                   & models.Q(longitude__gte=-180, longitude__lte=180)),
                name="member_location_valid",
            ),
            models.CheckConstraint(
                condition=(models.Q(quiet_hours_start__isnull=True)
                           & models.Q(quiet_hours_end__isnull=True))
                | (models.Q(quiet_hours_start__isnull=False)
                   & models.Q(quiet_hours_end__isnull=False)
                   & ~models.Q(quiet_hours_start=models.F("quiet_hours_end"))),
                name="member_quiet_hours_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["email"], name="member_email_idx"),
            models.Index(fields=["phone"], name="member_phone_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.full_name or self.external_id} ({self.external_id})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Device(models.Model):
    """A push address: one app install of a member."""

    class Platform(models.TextChoices):
        FCM = "fcm", "Firebase (Android)"
        APNS = "apns", "Apple"
        HMS = "hms", "Huawei"
        WEBPUSH = "webpush", "Web push"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=8, choices=Platform.choices)
    token = models.TextField(help_text="Registration token or web-push subscription JSON.")
    app = models.CharField(max_length=100, blank=True, help_text="App id or bundle id.")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "token"], name="device_token_unique")
        ]

    def __str__(self) -> str:
        return f"{self.platform} device of {self.member_id}"


class MessengerAccount(models.Model):
    """A member's id on a messenger or social network (Viber, VK, Telegram...)."""

    class Network(models.TextChoices):
        VIBER = "viber", "Viber"
        VK = "vk", "VK"
        TELEGRAM = "telegram", "Telegram"
        WHATSAPP = "whatsapp", "WhatsApp"

    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="messenger_accounts")
    network = models.CharField(max_length=16, choices=Network.choices)
    account_id = models.CharField(max_length=128)
    is_active = models.BooleanField(default=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["network", "account_id"],
                                    name="messenger_account_unique")
        ]

    def __str__(self) -> str:
        return f"{self.network}:{self.account_id}"

    @property
    def channel(self) -> str:
        return Channel.VIBER if self.network == self.Network.VIBER else Channel.SOCIAL


class SubscriptionCategory(models.Model):
    """A kind of marketing the program lets members refuse on its own (offers, news...)."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "subscription categories"

    def __str__(self) -> str:
        return self.name


class ConsentSource(models.TextChoices):
    IMPORT = "import", "Import"
    ACCOUNT_PAGE = "account_page", "Account page"
    APP = "app", "Mobile app"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
    SMS_STOP = "sms_stop", "SMS STOP keyword"
    SUPPORT = "support", "Support agent"
    API = "api", "API"
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in confirmation"
    ERASURE = "erasure", "Erasure request"


class Purpose(models.TextChoices):
    MARKETING = "marketing", "Marketing"
    SERVICE = "service", "Service"


class ConsentEvent(models.Model):
    """One grant or withdrawal, as it happened: the ledger that proves consent.

    Append-only: rows are written by `members.services.consents` and never changed, except
    that erasure blanks the evidence that identifies a person (IP, user agent).
    """

    class Action(models.TextChoices):
        GRANT = "grant", "Granted"
        WITHDRAW = "withdraw", "Withdrawn"

    # No database constraint on the ledger's member key (nor on Consent's): a member import
    # writes a million members and 1.3M events and states in one transaction, where the
    # per-row key checks were a third of PostgreSQL's work. Every row is written by the
    # services for a member they hold or have just written, and Django still applies PROTECT
    # and CASCADE on delete (members are erased, not deleted).
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="consent_events",
                               db_index=False, db_constraint=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.MARKETING)
    # Both are NULL on nearly every event: partial indexes (Meta) cover the few that are not,
    # so a million-row import does not pay two index entries per event for nothing.
    category = models.ForeignKey(SubscriptionCategory, on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="+", db_index=False)
    action = models.CharField(max_length=8, choices=Action.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    recorded_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, db_default="")
    consent_text = models.TextField(blank=True, db_default="",
                                    help_text="The wording the member agreed to or saw.")
    reason = models.TextField(blank=True, db_default="",
                              help_text="Why a support agent changed it.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+", help_text="The staff user, if any.",
                              db_index=False)

    class Meta:
        ordering = ["recorded_at", "id"]
        indexes = [
            models.Index(fields=["member", "recorded_at"], name="consent_event_member_idx"),
            models.Index(fields=["category"], condition=models.Q(category__isnull=False),
                         name="consent_event_category_idx"),
            models.Index(fields=["actor"], condition=models.Q(actor__isnull=False),
                         name="consent_event_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.channel}/{self.purpose}: {self.action} ({self.source})"


class Consent(models.Model):
    """The current consent of a member for one channel, purpose and (optionally) category.

    Derived from the ledger by the consent service. Absent means never given: only a `granted`
    channel row makes a member marketable on a channel; a `withdrawn` category row excludes
    them from that category's mailings.
    """

    Purpose = Purpose
    Source = ConsentSource

    class State(models.TextChoices):
        GRANTED = "granted", "Granted"
        WITHDRAWN = "withdrawn", "Withdrawn"

    # Covered by the unique (member, channel, purpose[, category]) indexes.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="consents", db_index=False,
        db_constraint=False,  # see ConsentEvent.member
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.MARKETING)
    category = models.ForeignKey(SubscriptionCategory, on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="consents", db_index=False)
    state = models.CharField(max_length=16, choices=State.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "channel", "purpose"], condition=models.Q(category=None),
                name="consent_one_per_member_channel",
            ),
            models.UniqueConstraint(
                fields=["member", "channel", "purpose", "category"],
                condition=models.Q(category__isnull=False),
                name="consent_one_per_member_category",
            ),
        ]
        # Segment and snapshot queries ask "is there a granted row for this member and channel".
        indexes = [
            models.Index(
                fields=["channel", "purpose", "member"],
                condition=models.Q(state="granted", category=None),
                name="consent_granted_idx",
            )
        ]

    def __str__(self) -> str:
        category = f"/{self.category_id}" if self.category_id else ""
        return f"{self.member_id} {self.channel}/{self.purpose}{category}: {self.state}"


class Suppression(models.Model):
    """An address that must not be contacted, whoever holds it: checked on every send."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        MANUAL = "manual", "Manual block"
        INVALID = "invalid", "Invalid address"

    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=254, help_text="Lower-case email or E.164 phone.")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    source = models.CharField(max_length=64, blank=True,
                              help_text="Where it came from: a gateway, an import, an agent.")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "address"], name="suppression_unique")
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address} ({self.reason})"


class AuditEntry(models.Model):
    """Who did what to whom: privacy requests and support changes (holds no personal data)."""

    class Action(models.TextChoices):
        DATA_EXPORT = "data_export", "Personal data exported"
        ERASURE = "erasure", "Member erased"
        CONSENT_CHANGE = "consent_change", "Consent changed by support"
        SUPPRESSION_ADD = "suppression_add", "Address suppressed"
        SUPPRESSION_REMOVE = "suppression_remove", "Suppression lifted"
        MEMBER_IMPORT = "member_import", "Members imported"
        MEMBER_EXPORT = "member_export", "Members exported"

    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+")
    # A plain id, not a foreign key: the entry must outlive whatever it is about.
    member_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} member={self.member_id}"


class SignInCode(models.Model):
    """A one-time code a member asked for to sign in to their account pages or the app.

    Every request is a row, also for an address no member has (nothing is sent then, and the
    answer looks the same), so the per-address and per-IP limits count one table. Only a
    keyed hash of the code is stored.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, null=True, blank=True,
                               related_name="sign_in_codes")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    address = models.CharField(max_length=254, help_text="Normalized: lower-case email or E.164.")
    code_hash = models.CharField(max_length=64)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["address", "created_at"], name="signincode_address_idx"),
            models.Index(fields=["ip_address", "created_at"], name="signincode_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"sign-in code for {self.channel}:{self.address} at {self.created_at:%Y-%m-%d %H:%M}"


class MemberToken(models.Model):
    """An app's credential for one member on one device: shown once, stored as a SHA-256 hash,
    listed per device in the account and revocable there or by support."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100, blank=True,
                            help_text="The device, as the app names it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["member", "created_at"], name="membertoken_member_idx")]

    def __str__(self) -> str:
        return f"token {self.pk} of member {self.member_id} ({self.name or 'unnamed device'})"


class FeedbackThread(models.Model):
    """A member's conversation with support about one topic (members/services/feedback.py).

    The status moves new → in progress → answered → closed: an agent's answer makes it
    answered, the member's reply to an answer puts it back in progress, and a closed thread
    takes no new messages.
    """

    class Topic(models.TextChoices):
        POINTS = "points", _("Points")
        ORDER = "order", _("Order")
        OFFER = "offer", _("Offer")
        ACCOUNT = "account", _("Account")
        OTHER = "other", _("Other")

    class Status(models.TextChoices):
        NEW = "new", _("New")
        IN_PROGRESS = "in_progress", _("In progress")
        ANSWERED = "answered", _("Answered")
        CLOSED = "closed", _("Closed")

    # Covered by feedbackthread_member_idx, which also serves the member's newest-first list.
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="feedback_threads",
                               db_index=False)
    topic = models.CharField(max_length=16, choices=Topic.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField()
    last_message_at = models.DateTimeField(help_text="When the newest message was written.")

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-id"], name="feedbackthread_member_idx"),
            models.Index(fields=["status", "-last_message_at"], name="feedbackthread_status_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_topic_display()} ({self.get_status_display()})"


class FeedbackMessage(models.Model):
    """One message of a feedback thread, from the member or from a support agent, with at most
    one attachment kept in the private `feedback` storage (never under a public URL)."""

    class Sender(models.TextChoices):
        MEMBER = "member", "Member"
        SUPPORT = "support", "Support"

    thread = models.ForeignKey(FeedbackThread, on_delete=models.CASCADE, related_name="messages",
                               db_index=False)
    sender = models.CharField(max_length=8, choices=Sender.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                               blank=True, related_name="+", db_index=False,
                               help_text="The support agent who answered.")
    text = models.TextField()
    attachment = models.CharField(max_length=255, blank=True,
                                  help_text="The file's random name in the feedback storage.")
    attachment_name = models.CharField(max_length=255, blank=True,
                                       help_text="The file name the sender gave.")
    attachment_type = models.CharField(max_length=32, blank=True,
                                       help_text="The content type read from the file itself.")
    attachment_size = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["thread", "id"], name="feedbackmessage_thread_idx")]

    def __str__(self) -> str:
        return f"{self.sender} in thread {self.thread_id} at {self.created_at:%Y-%m-%d %H:%M}"
