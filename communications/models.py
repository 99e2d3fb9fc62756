from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from campaigns.models import Campaign, StaticList, TargetGroup
from communications.secrets import (
    SecretsUnreadable,
    secrets_decrypt,
    secrets_encrypt,
    settings_split,
)
from members.models import Channel, Member, SubscriptionCategory


class Gateway(models.Model):
    """A configured provider account for one channel (an SMTP relay, an SMPP link, ...)."""

    name = models.CharField(max_length=100, unique=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    provider = models.CharField(
        max_length=32, help_text="Adapter key in communications.gateways (smtp, file_sink, ...)."
    )
    settings = models.JSONField(
        default=dict, blank=True,
        help_text="Provider settings, e.g. host, port, use_tls; rate_per_second caps what "
                  "every worker together sends through this gateway.",
    )
    sender = models.CharField(
        max_length=200, blank=True, help_text="From address or sender id; blank uses the default."
    )
    price_per_message = models.DecimalField(max_digits=10, decimal_places=5, default=0)
    is_active = models.BooleanField(default=True)
    backup = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Failover: while this gateway's circuit is open (its batches keep failing "
                  "to reach the provider), messages go through this gateway of the same "
                  "channel instead.",
    )
    # The provider's secret settings (passwords, keys, tokens) as one Fernet token; see
    # communications/secrets.py. Never in `settings`, never shown.
    secrets = models.TextField(blank=True, default="", db_default="", editable=False)
    # The last health probe (communications.services.gateways.gateway_health_check);
    # None until the first.
    last_health_ok = models.BooleanField(null=True, blank=True, editable=False)
    last_health_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_health_detail = models.CharField(max_length=500, blank=True, default="",
                                          db_default="", editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.channel}/{self.provider})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Storage, not a business rule: whichever path wrote the row (the admin, a factory, a
        # shell, a bench script), a secret typed into `settings` is encrypted before it lands.
        self._secrets_take_from_settings()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "settings" in update_fields:
            kwargs["update_fields"] = {*update_fields, "secrets"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from communications.gateways import gateway_config_validate

        try:
            settings = self.adapter_settings()
        except SecretsUnreadable as exc:
            raise ValidationError({"settings": str(exc)}) from exc
        gateway_config_validate(channel=self.channel, provider=self.provider,
                                settings=settings)
        if self.backup_id is not None:
            if self.backup_id == self.pk:
                raise ValidationError({"backup": "a gateway cannot be its own backup"})
            if self.backup.channel != self.channel:
                raise ValidationError({"backup": f"the backup sends {self.backup.channel}, "
                                                 f"this gateway {self.channel}"})

    def secret_values(self) -> dict[str, Any]:
        """The decrypted secret settings (raises SecretsUnreadable when the key is gone)."""
        return secrets_decrypt(self.secrets)

    def secret_names(self) -> list[str]:
        """Which secret settings are set, without showing them."""
        return sorted(self.secret_values())

    def secrets_set(self, values: Mapping[str, Any], *,
                    clear: Iterable[str] = ()) -> None:
        """Set (or with `clear`, remove) secret settings; saved with the row."""
        current = self.secret_values()
        for name in clear:
            current.pop(name, None)
        current.update(values)
        self.secrets = secrets_encrypt(current)

    def adapter_settings(self) -> dict[str, Any]:
        """Plain and secret settings together, as the adapter reads them; a secret still typed
        into `settings` (not yet saved) wins, as it will once saved."""
        settings = self.settings if isinstance(self.settings, dict) else {}
        return {**self.secret_values(), **settings}

    def _secrets_take_from_settings(self) -> None:
        if not isinstance(self.settings, dict):
            return
        plain, secret = settings_split(self.provider, self.settings)
        if secret:
            self.secrets_set(secret)
            self.settings = plain


class Template(models.Model):
    """What a mailing says, per channel and language, with `{{ member.first_name }}` placeholders.

    Placeholders are checked when the template is saved (see `communications.renderers`), so an
    unknown one is an error for the marketer, not for a worker at send time.
    """

    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    language = models.CharField(max_length=8, default="en")
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField()
    html_body = models.TextField(blank=True)
    mjml_body = models.TextField(
        blank=True, verbose_name="MJML",
        help_text="Email only: written in MJML, it is compiled into the HTML body (with its "
                  "CSS inlined) when the template is saved.",
    )
    # Push and Viber: what the message shows and opens besides its text.
    image_url = models.CharField(
        max_length=500, validators=[URLValidator(schemes=["https"])], blank=True, default="",
        db_default="",
        help_text="Push and Viber: an https image shown with the message.",
    )
    link_url = models.CharField(
        max_length=500, blank=True, default="", db_default="",
        help_text="Push and Viber: what a tap opens, a web URL or an app deep link "
                  "(myapp://offers/7).",
    )
    button_text = models.CharField(
        max_length=30, blank=True, default="", db_default="",
        help_text="Viber: the label of the button that opens the link.",
    )
    push_data = models.JSONField(
        default=dict, blank=True, db_default={},
        help_text='Push: data the app reads, text keys and values ({"offer_id": "7"}).',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} [{self.channel}/{self.language}]"

    def clean(self) -> None:
        from communications.mjml import mjml_compile
        from communications.renderers import template_validate

        if self.mjml_body:
            if self.channel != Channel.EMAIL:
                raise ValidationError({"mjml_body": "MJML is for email templates"})
            self.html_body = mjml_compile(self.mjml_body)
        template_validate(channel=self.channel, subject=self.subject, body=self.body,
                          html_body=self.html_body, image_url=self.image_url,
                          link_url=self.link_url, button_text=self.button_text,
                          push_data=self.push_data)


HOLDOUT_PERCENT_MAX = 50
TEST_PERCENT_MAX = 50
VARIANTS_MIN, VARIANTS_MAX = 2, 5


class WinnerMetric(models.TextChoices):
    """What picks an A/B test's winner: the share of a variant's sent messages opened or
    clicked, or of its members reached who placed an order since the start."""

    OPEN_RATE = "open_rate", "Open rate"
    CLICK_RATE = "click_rate", "Click rate"
    CONVERSION_RATE = "conversion_rate", "Conversion rate"


class Mailing(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        RECURRING = "recurring", "Recurring (each run is a mailing of its own)"
        PREPARING = "preparing", "Preparing (freezing the audience)"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        REGULAR = "regular", "Regular (one send to an audience)"
        TRIGGER = "trigger", "Trigger (a message per matching event or date)"

    name = models.CharField(max_length=200)
    # A trigger mailing has a `Trigger` row and, once activated, stays `sending` until it is
    # cancelled (communications.services.triggers).
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REGULAR,
                            db_default=Kind.REGULAR, editable=False)
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, null=True, blank=True, related_name="mailings"
    )
    # The audience: a target group, a static list (an uploaded address list becomes one) or
    # a single member; exactly one of the three (`services.mailing_schedulable_errors`).
    target_group = models.ForeignKey(
        TargetGroup, on_delete=models.PROTECT, null=True, blank=True, related_name="mailings"
    )
    static_list = models.ForeignKey(
        StaticList, on_delete=models.PROTECT, null=True, blank=True, related_name="mailings",
        help_text="A fixed set of members, such as the members of an uploaded address list.",
    )
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="A single member.",
    )
    template = models.ForeignKey(
        Template, on_delete=models.PROTECT, null=True, blank=True, related_name="mailings"
    )
    gateway = models.ForeignKey(
        Gateway, on_delete=models.PROTECT, null=True, blank=True, related_name="mailings"
    )
    category = models.ForeignKey(
        SubscriptionCategory, on_delete=models.PROTECT, null=True, blank=True,
        related_name="mailings",
        help_text="Members who withdrew from this subscription category are skipped.",
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    send_in_member_timezone = models.BooleanField(
        default=False,
        help_text="Send at the scheduled clock time in each member's own time zone (10:00 "
                  "wherever they are) rather than at one instant. Members without a time "
                  "zone get it at the program's time.",
    )
    recurrence = models.CharField(
        max_length=300, blank=True,
        help_text="Repeat on a schedule: an iCalendar rule (RFC 5545), e.g. "
                  "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0 for every Monday at 9:00 in the "
                  "program's time zone. Each run is a mailing of its own, copied from this one.",
    )
    recurring_parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, editable=False,
        related_name="runs", help_text="The recurring mailing this run was copied from.",
    )
    priority = models.SmallIntegerField(
        default=0,
        help_text="Who gets a member's last slot under a frequency cap: while a message of a "
                  "higher-priority mailing waits to go to a member, lower-priority mailings "
                  "count it against the cap. It does not reorder the sending itself.",
    )
    defer_capped = models.BooleanField(
        default=False,
        help_text="A member over a frequency cap gets the message at their next allowed slot "
                  "(within the message lifetime) instead of skipping it.",
    )
    message_lifetime = models.DurationField(
        null=True, blank=True,
        help_text="Counted from the start: messages not sent by then are skipped or expired, "
                  "and sent ones not reported delivered by then end expired (so only set it "
                  "on gateways that report deliveries). For example 2 00:00:00 for two days. "
                  "Blank: no limit.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT,
                             editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    failure_reason = models.TextField(blank=True, editable=False)
    last_dispatch_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set once the lifetime has ended and nothing is left to expire, so the sweep stops
    # looking at the mailing.
    messages_expired_at = models.DateTimeField(null=True, blank=True, editable=False)
    track_engagement = models.BooleanField(
        default=False,
        help_text="Count opens and clicks of its emails through Engage's own pixel and link "
                  "redirect (for gateways that report neither, such as SMTP).",
    )
    cascade_after = models.DurationField(
        null=True, blank=True,
        help_text="With further channels in the cascade: a member whose message failed, or "
                  "was not reported delivered within this time of sending, gets the next "
                  "channel too. Blank: only members the earlier channels cannot reach at all "
                  "(no address, no consent, suppressed) get the next one.",
    )
    # Control group and A/B test (communications.services.experiments). Both shares are drawn
    # per member by a hash of (mailing, member), so a part frozen again splits the same way.
    holdout_percent = models.PositiveSmallIntegerField(
        default=0, db_default=0, validators=[MaxValueValidator(HOLDOUT_PERCENT_MAX)],
        verbose_name="holdout %",
        help_text="Hold this share of the members who would get the mailing out of it, as "
                  "the control group its lift is measured against (skipped: holdout). "
                  "0 to 50.",
    )
    test_percent = models.PositiveSmallIntegerField(
        default=20, db_default=20,
        validators=[MinValueValidator(1), MaxValueValidator(TEST_PERCENT_MAX)],
        verbose_name="A/B test %",
        help_text="With A/B variants: this share of the members who get the mailing is split "
                  "evenly among the variants; the rest waits for the winner. 1 to 50.",
    )
    test_hours = models.PositiveSmallIntegerField(
        default=4, db_default=4, validators=[MinValueValidator(1), MaxValueValidator(168)],
        verbose_name="A/B test hours",
        help_text="With A/B variants: how long after the start the test runs before the "
                  "winner is chosen and sent to the rest.",
    )
    winner_metric = models.CharField(
        max_length=16, choices=WinnerMetric.choices, default=WinnerMetric.OPEN_RATE,
        db_default=WinnerMetric.OPEN_RATE,
        help_text="With A/B variants: the variant with the highest rate wins; on a tie the "
                  "first (A before B).",
    )
    winner = models.ForeignKey(
        "MailingVariant", on_delete=models.SET_NULL, null=True, blank=True, editable=False,
        related_name="+",
    )
    winner_chosen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        editable=False, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # A second person's approval of a mailing larger than ENGAGE_APPROVAL_THRESHOLD, for the
    # audience and content it had then (services.approvals.mailing_version).
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        editable=False, related_name="+",
    )
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    approved_version = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["state", "scheduled_at"], name="mailing_state_due_idx"),
        ]
        permissions = [("approve_mailing", "Can approve a large mailing for sending")]

    def __str__(self) -> str:
        return self.name

    @property
    def channel(self) -> str | None:
        return self.template.channel if self.template_id else None


class CascadeStep(models.Model):
    """A further channel of a mailing, tried in `position` order after the mailing's own
    template and gateway (`services.cascade`)."""

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="cascade_steps")
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+")
    gateway = models.ForeignKey(Gateway, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["mailing", "position"]
        constraints = [
            models.UniqueConstraint(fields=["mailing", "position"], name="cascade_step_once"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.template.channel} via {self.gateway}"


class MailingVariant(models.Model):
    """One version of an A/B tested mailing: its template, sent to an even share of the test
    part of the audience (`Mailing.test_percent`); 2 to 5 per mailing, labelled A to E by
    position. Messages carry the position (`Message.variant`)."""

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(VARIANTS_MAX)])
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["mailing", "position"]
        constraints = [
            models.UniqueConstraint(fields=["mailing", "position"], name="mailing_variant_once"),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.template}"

    @property
    def label(self) -> str:
        return variant_label(self.position)


def variant_label(position: int) -> str:
    """A, B, C ... for positions 1, 2, 3 ..."""
    return chr(ord("A") + position - 1)


class FrequencyCap(models.Model):
    """At most `max_messages` marketing messages per member within `period`, across mailings.

    On one channel, or on all of them together when `channel` is blank. A message counts from
    the moment it is claimed for sending until the period has passed since it was sent;
    transactional messages (no mailing) and messages that never went out (skipped, failed,
    cancelled, expired unsent) do not count. Every active cap that covers a mailing's channel
    applies.
    """

    class Unit(models.TextChoices):
        HOURS = "hours", "Hours"
        DAYS = "days", "Days"

    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True,
                               help_text="Blank: all channels together.")
    max_messages = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    period_length = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    period_unit = models.CharField(max_length=8, choices=Unit.choices, default=Unit.DAYS)
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(max_messages__gte=1),
                                   name="frequency_cap_max_positive"),
            models.CheckConstraint(condition=models.Q(period_length__gte=1),
                                   name="frequency_cap_period_positive"),
        ]

    def __str__(self) -> str:
        return (f"at most {self.max_messages} per {self.period_length} {self.period_unit} "
                f"on {self.channel or 'all channels'}")

    @property
    def period(self) -> timedelta:
        if self.period_unit == self.Unit.HOURS:
            return timedelta(hours=self.period_length)
        return timedelta(days=self.period_length)


class QuietHours(models.Model):
    """No marketing on a channel between `starts_at` and `ends_at` in the member's own time
    zone (the program's TIME_ZONE when theirs is blank or unknown). A window may wrap past
    midnight (21:00-08:00). Messages that come due inside it are held until it ends."""

    channel = models.CharField(max_length=16, choices=Channel.choices, unique=True)
    starts_at = models.TimeField(help_text="Local time the quiet window starts, e.g. 21:00.")
    ends_at = models.TimeField(help_text="Local time it ends, e.g. 08:00.")
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.channel}: {self.starts_at:%H:%M}-{self.ends_at:%H:%M}"

    def clean(self) -> None:
        if self.starts_at is not None and self.starts_at == self.ends_at:
            raise ValidationError({"ends_at": "must differ from the start"})


class AudiencePart(models.Model):
    """One range of member ids of a preparing mailing's audience snapshot.

    The snapshot of a large audience is cut by member id so that every free worker freezes a
    part at once (one INSERT ... SELECT each, in its own transaction): on two cores, 1M members
    in parts of 125k took about 7 s against 15 s for one statement (`make bench ONLY=
    audience_snapshot`; concurrent inserts into one table contend, so the gain is less than
    the cores, and smaller parts balance the two better). A part is written and marked done in
    the same transaction, so a worker killed mid-part leaves nothing and the part is simply
    taken again.
    """

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="audience_parts")
    first_member_id = models.BigIntegerField()
    last_member_id = models.BigIntegerField()
    written = models.PositiveIntegerField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailing", "first_member_id"],
                                    name="audience_part_once"),
        ]

    def __str__(self) -> str:
        return f"{self.mailing_id}: members {self.first_member_id}-{self.last_member_id}"


class Message(models.Model):
    """One recipient of one mailing on one channel, and what became of it.

    A message without a mailing is transactional (a double opt-in confirmation, a sign-in
    code): its rendered `content` is stored with it because no template row describes it.
    """

    class Status(models.TextChoices):
        """One state machine for every channel; a status only moves forward
        (`communications.services.statuses.STATUS_RANK`)."""

        CREATED = "created", "Created"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending (claimed by a worker)"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened / read"
        CLICKED = "clicked", "Clicked"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected by the provider"
        UNDELIVERED = "undelivered", "Undelivered"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained (marked as spam)"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"
        UNKNOWN = "unknown", "Unknown (in doubt)"

    class HoldReason(models.TextChoices):
        QUIET_HOURS = "quiet_hours", "Quiet hours in the member's time zone"
        FREQUENCY_CAP = "frequency_cap", "Deferred by a frequency cap"
        LOCAL_TIME = "local_time", "Waiting for the send time in the member's time zone"
        MEMBER_QUIET_HOURS = "member_quiet", "The member's own quiet hours"
        AB_TEST = "ab_test", "Waiting for the A/B test's winner"

    class SkipReason(models.TextChoices):
        MEMBER_INACTIVE = "inactive", "Member blocked or erased"
        NO_ADDRESS = "no_address", "No address for the channel"
        SUPPRESSED = "suppressed", "Address on the suppression list"
        OPTED_OUT = "opted_out", "No marketing consent on the channel"
        NOT_SUBSCRIBED = "not_subscribed_to_category", "Not subscribed to the mailing's category"
        UNCONFIRMED = "unconfirmed", "Email address not confirmed (double opt-in)"
        DUPLICATE_ADDRESS = "duplicate_address", "Address shared with another recipient"
        FREQUENCY_CAP = "frequency_cap", "Over the frequency cap"
        QUIET_HOURS_EXPIRED = "quiet_hours_expired", "Quiet hours lasted past the lifetime"
        TRIGGER_CANCELLED = "trigger_cancelled", "Cancelled by a later event of the trigger"
        HOLDOUT = "holdout", "Held out as the control group"

    # Both foreign keys are covered by the composite indexes below; their own indexes would only
    # slow the audience snapshot down. Nor do they carry database constraints: a snapshot
    # writes a million rows in one statement, and the per-row checks at commit (each taking a
    # KEY SHARE lock on the member row) cost more than the insert itself. The rows come from
    # the member and mailing tables in that statement, and Django still cascades deletes.
    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="messages", db_index=False, null=True,
        blank=True, db_constraint=False,
    )
    # A test send to an address typed in by the marketer has no member.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="messages", db_index=False,
        db_constraint=False, null=True, blank=True,
    )
    # A test send goes through the real gateway but counts nowhere: not in the mailing's
    # funnel, not against frequency caps, and it does not take the member's one message.
    is_test = models.BooleanField(default=False, db_default=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    # 1024: a web-push subscription (endpoint and keys, as JSON) is the longest address.
    address = models.CharField(max_length=1024, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # A queued message is not claimed before `not_before`; `held_for` says why it waits, and
    # what it ends as when the mailing's lifetime runs out first. The database default keeps
    # the audience snapshot's INSERT (which names its columns) valid.
    not_before = models.DateTimeField(null=True, blank=True)
    held_for = models.CharField(max_length=16, choices=HoldReason.choices, blank=True,
                                db_default="")
    # The gateway that took the message (the mailing's, or the next one after a failover);
    # receipts are matched on (gateway, provider_id).
    gateway = models.ForeignKey(Gateway, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+", db_index=False, db_constraint=False)
    provider_id = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    cost = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    content = models.JSONField(null=True, blank=True,
                               help_text="Subject and body of a transactional message.")
    # What a trigger mailing's message answers: the event of the log it matched, or for a date
    # rule the occasion ("birthday:2026-12-07", "voucher:17"); a member gets a trigger's message
    # once per event or occasion (the unique constraints below). No database constraint on the
    # event: the event log is loyalty's and is never deleted from under a message.
    event = models.ForeignKey("loyalty.Event", on_delete=models.DO_NOTHING, null=True,
                              blank=True, related_name="+", db_index=False,
                              db_constraint=False)
    occasion = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The A/B variant (its `MailingVariant.position`) a message of the test part is rendered
    # with; null for the rest of the audience, which gets the winner's template.
    variant = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set just before the claimed message goes to the provider's connection: a worker that
    # dies holding a claim leaves in doubt only what it had handed over; the rest of its claim
    # never left and goes back to the queue (dispatch.messages_mark_unconfirmed_unknown).
    handed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["mailing", "member", "channel"], name="message_once_per_recipient",
                condition=models.Q(is_test=False, event__isnull=True, occasion=""),
            ),
            models.UniqueConstraint(
                fields=["mailing", "member", "event"], name="message_once_per_event",
                condition=models.Q(event__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["mailing", "member", "occasion"], name="message_once_per_occasion",
                condition=~models.Q(occasion=""),
            ),
        ]
        indexes = [
            models.Index(fields=["mailing", "status"], name="message_mailing_status_idx"),
            # The sweeper looks only at claimed rows; a partial index keeps that scan tiny.
            models.Index(
                fields=["claimed_at"],
                condition=models.Q(status="sending"),
                name="message_claimed_idx",
            ),
            models.Index(fields=["member", "created_at"], name="message_member_idx"),
            # The member's inbox (communications.selectors.inbox), newest first. Partial: rows
            # enter when they are sent, so the audience snapshot's INSERT never pays for them.
            models.Index(fields=["member", "-sent_at", "-id"],
                         condition=models.Q(is_test=False, sent_at__isnull=False),
                         name="message_inbox_idx"),
            # The app's unread count on every home call: the push messages sent and not yet
            # read, counted from the index alone.
            models.Index(fields=["member", "-sent_at", "-id"],
                         condition=models.Q(is_test=False, sent_at__isnull=False,
                                            channel="push",
                                            status__in=["sent", "delivered", "expired"]),
                         name="message_unread_idx"),
            models.Index(fields=["gateway", "provider_id"], condition=~models.Q(provider_id=""),
                         name="message_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mailing_id}/{self.member_id}/{self.channel}: {self.status}"


class MessageStatusChange(models.Model):
    """Every change of a message's status after it was created: when, to what, said by whom.

    Written in bulk with the change itself (`services.statuses`); a change that would move a
    status backwards is not made and not recorded.
    """

    class Source(models.TextChoices):
        DISPATCH = "dispatch", "Dispatch (the gateway's answer)"
        RECEIPT = "receipt", "Provider receipt"
        TRACKING = "tracking", "Engage's open and click tracking"
        SWEEPER = "sweeper", "Sweeper (lease or lifetime expired)"
        COMPLIANCE = "compliance", "Compliance (consent, frequency cap, quiet hours)"
        OPERATOR = "operator", "Marketer (pause, cancel)"
        MEMBER = "member", "The member (read in the app or the account)"
        TRIGGER = "trigger", "Trigger (a later event cancelled the message)"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="changes",
                                db_index=False, db_constraint=False)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=Source.choices)
    code = models.CharField(max_length=64, blank=True,
                            help_text="The provider's own state or error code.")
    detail = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["message", "occurred_at"],
                                name="message_change_idx")]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.status} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class ProviderReceipt(models.Model):
    """A delivery receipt or tracking event as a provider sent it, kept until it is applied.

    Webhooks only store these (and answer at once); they are applied in bulk afterwards. A
    receipt that arrives before its send was recorded waits here for the message's provider
    id; the same receipt sent twice is stored once.
    """

    # Indexed by the unique (gateway, provider id, status) constraint; a second index of its
    # own would cost every receipt insert and apply.
    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="+",
                                db_index=False)
    provider_id = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    occurred_at = models.DateTimeField()
    code = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)
    received_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gateway", "provider_id", "status"],
                                    name="provider_receipt_once"),
        ]
        indexes = [
            models.Index(fields=["gateway", "provider_id"],
                         condition=models.Q(applied_at__isnull=True),
                         name="provider_receipt_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway_id}/{self.provider_id}: {self.status}"


class Trigger(models.Model):
    """What starts the messages of a trigger mailing (`Mailing.kind` trigger): an event of the
    log, or a date rule checked daily in each member's time zone.

    An event trigger matches events of `event_type` whose payload meets every condition
    (`conditions`: a list of {"path", "op", "value"}, `services.triggers.CONDITION_OPS`), for
    members in the mailing's target group (when it has one); its message is due `delay` after
    the event occurred, and an event of a `cancel_on` type for the same member (with the same
    payload value at `cancel_match`, when set) occurring within the delay cancels it. A date
    rule fires once per occasion at `send_hour` in the member's local time. The checks live in
    `services.triggers.trigger_errors`.
    """

    class DateRule(models.TextChoices):
        BIRTHDAY = "birthday", "On the member's birthday"
        VOUCHER_EXPIRING = "voucher_expiring", "Days before a voucher expires"
        DAYS_SINCE_LAST_PURCHASE = "days_since_last_purchase", "Days since the last purchase"

    mailing = models.OneToOneField(Mailing, on_delete=models.CASCADE, related_name="trigger")
    event_type = models.CharField(
        max_length=64, blank=True,
        help_text="An event type of the catalog (ORDER_PLACED) or an active custom one; "
                  "blank for a date rule.")
    date_rule = models.CharField(max_length=32, choices=DateRule.choices, blank=True,
                                 help_text="Instead of an event type: a date the member has.")
    days = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="For “days before a voucher expires” and “days since the last purchase”.")
    send_hour = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(23)],
        help_text="Date rules: the hour of the member's local day the message is due.")
    conditions = models.JSONField(
        default=list, blank=True,
        help_text='Conditions on the event payload, all of which must hold, e.g. '
                  '[{"path": "total", "op": "gte", "value": 50}]; ops: eq, ne, gt, gte, lt, '
                  'lte, in (a list), exists (true or false); a path goes into nested objects '
                  'with dots (“store.city”).')
    delay = models.DurationField(
        null=True, blank=True,
        help_text="Event triggers: how long after the event the message is due, e.g. "
                  "02:00:00 for two hours. Blank: at once.")
    cancel_on = models.JSONField(
        default=list, blank=True,
        help_text='Event types that cancel a message still waiting out the delay when one '
                  'occurs for the same member within it, e.g. ["ORDER_REFUNDED"].')
    cancel_match = models.CharField(
        max_length=100, blank=True,
        help_text="A payload path both events must have equal for the cancel to count, e.g. "
                  "order_id. Blank: any cancelling event of the member counts.")
    # The reader's position in the event log: events recorded after it are still to match.
    read_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(~models.Q(event_type="") & models.Q(date_rule=""))
                | (models.Q(event_type="") & ~models.Q(date_rule="")),
                name="trigger_event_or_date"),
        ]

    def __str__(self) -> str:
        return self.event_type or self.get_date_rule_display()

    def clean(self) -> None:
        from communications.services.triggers import trigger_errors

        errors = trigger_errors(trigger=self)
        if errors:
            raise ValidationError(errors)


class TriggerMailing(Mailing):
    """Mailings of kind `trigger`, as the marketer's own admin screen lists them."""

    class Meta:
        proxy = True
        verbose_name = "trigger mailing"


class OrderCredit(models.Model):
    """An order credited to the campaign and mailing whose message touched its member last
    (communications.services.attribution): one credit per order, explainable by the message,
    the kind of touch and its time. A refund lowers `revenue`; a full one reverses the credit.
    """

    class Touch(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"

    order = models.OneToOneField("loyalty.Order", on_delete=models.CASCADE, primary_key=True,
                                 related_name="credit")
    # Covered by ordercredit_campaign_idx.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="order_credits",
                                 db_index=False)
    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="order_credits")
    # The message stays for the explanation; messages are never deleted from under a credit
    # but by their mailing, which takes its credits with it.
    message = models.ForeignKey(Message, on_delete=models.DO_NOTHING, related_name="+",
                                db_index=False, db_constraint=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+",
                               db_index=False)
    touch = models.CharField(max_length=16, choices=Touch.choices)
    touched_at = models.DateTimeField()
    # Copied from the order, so a campaign's figures are one scan of its credits.
    placed_at = models.DateTimeField()
    revenue = models.DecimalField(max_digits=12, decimal_places=2,
                                  help_text="The order's total less its refunds.")
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    points = models.IntegerField(default=0)
    credited_at = models.DateTimeField()
    reversed_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When a full refund took the credit back.")

    class Meta:
        indexes = [
            models.Index(fields=["campaign", "mailing"], name="ordercredit_campaign_idx"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} → mailing {self.mailing_id}"


class AttributionPosition(models.Model):
    """How far attribution has read the orders (by `Order.recorded_at`); one row."""

    read_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"orders read until {self.read_until:%Y-%m-%d %H:%M:%S}"
