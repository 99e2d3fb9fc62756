from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from communications.models import CascadeStep, Mailing, MailingVariant, Message, Trigger
from communications.selectors import mailing_counts_from_annotations, mailing_status_counts
from communications.selectors.calendar import MAX_CALENDAR_DAYS, calendar_range_errors
from communications.services.mailings import MAILING_EDITABLE_FIELDS
from communications.services.triggers import TRIGGER_FIELDS, TRIGGER_MAILING_FIELDS

# Messages per status, one field per status of the state machine.
MailingStatusCountsSerializer = type("MailingStatusCountsSerializer", (serializers.Serializer,), {
    "total": serializers.IntegerField(),
    **{status: serializers.IntegerField() for status in Message.Status.values},
    "skipped_by_reason": serializers.DictField(child=serializers.IntegerField()),
})


class CascadeStepSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="template.channel", read_only=True)

    class Meta:
        model = CascadeStep
        fields = ["position", "channel", "template", "gateway"]
        read_only_fields = ["position"]


class MailingVariantSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True, help_text="A, B, ... by position.")

    class Meta:
        model = MailingVariant
        fields = ["position", "label", "template"]
        read_only_fields = ["position"]


class MailingSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(read_only=True, allow_null=True)
    cascade_steps = CascadeStepSerializer(many=True, read_only=True)
    variants = MailingVariantSerializer(many=True, read_only=True)
    winner = serializers.SerializerMethodField(
        help_text="The A/B test's winning variant (A, B, ...), once chosen; else null.")
    status_counts = serializers.SerializerMethodField()

    class Meta:
        model = Mailing
        fields = [
            "id", "name", "state", "channel", "campaign", "target_group", "static_list",
            "member", "template", "gateway", "track_engagement", "cascade_steps",
            "cascade_after", "category",
            "scheduled_at",
            "send_in_member_timezone", "recurrence", "recurring_parent", "priority",
            "defer_capped", "message_lifetime", "started_at", "completed_at", "failure_reason",
            "created_at", "status_counts", "kind", "approved_by", "approved_at",
            "holdout_percent", "variants", "test_percent", "test_hours", "winner_metric",
            "winner", "winner_chosen_at",
        ]
        read_only_fields = fields

    def get_winner(self, mailing: Mailing) -> str | None:
        # From the variants, which the views prefetch, rather than a query per mailing.
        return next((variant.label for variant in mailing.variants.all()
                     if variant.pk == mailing.winner_id), None)

    @extend_schema_field(MailingStatusCountsSerializer)
    def get_status_counts(self, mailing: Mailing) -> dict[str, Any]:
        if hasattr(mailing, "count_queued"):
            return mailing_counts_from_annotations(mailing)
        return mailing_status_counts(mailing=mailing)


class MailingScheduleSerializer(serializers.Serializer):
    scheduled_at = serializers.DateTimeField(required=False)


class MailingWriteSerializer(serializers.ModelSerializer):
    """A draft mailing's fields; the state changes through the schedule / start / pause /
    resume / cancel actions."""

    cascade_steps = CascadeStepSerializer(
        many=True, required=False,
        help_text="The further channels, in order: members the mailing's own channel cannot "
                  "reach (or, with cascade_after, did not reach) get the next one. Given, it "
                  "replaces the mailing's cascade.")
    variants = MailingVariantSerializer(
        many=True, required=False,
        help_text="The A/B variants, 2 to 5, in order (A, B, ...): test_percent of the "
                  "audience is split evenly among them and the winner by winner_metric goes "
                  "to the rest after test_hours. Given, it replaces the mailing's variants; "
                  "[] ends the test.")

    class Meta:
        model = Mailing
        fields = [*MAILING_EDITABLE_FIELDS, "cascade_steps", "variants"]
        extra_kwargs = {"member": {"required": False}}

    def service_fields(self) -> dict[str, Any]:
        """The validated fields as the mailing services take them."""
        fields = dict(self.validated_data)
        steps = fields.pop("cascade_steps", None)
        if steps is not None:
            fields["cascade"] = [(step["template"], step["gateway"]) for step in steps]
        variants = fields.pop("variants", None)
        if variants is not None:
            fields["variants"] = [variant["template"] for variant in variants]
        return fields


class AddressListUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="Phones or emails: one a line, or a CSV with a "
                                           "phone / email column.")
    region = serializers.CharField(required=False, max_length=2, help_text="ISO country of "
                                   "phones written without a country code, e.g. DE.")


class AddressListReportSerializer(serializers.Serializer):
    static_list = serializers.IntegerField(help_text="The static list now the audience.")
    members = serializers.IntegerField(help_text="Members who have one of the addresses.")
    total = serializers.IntegerField()
    valid = serializers.IntegerField()
    unknown = serializers.IntegerField(help_text="Valid addresses no member has: not sent to.")
    invalid = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    invalid_examples = serializers.ListField(child=serializers.DictField())


class MailingTestSendSerializer(serializers.Serializer):
    """Who gets a test of the mailing: members (each rendered for them) and typed addresses."""

    member_ids = serializers.ListField(child=serializers.IntegerField(min_value=1),
                                       required=False, default=list,
                                       help_text="Members, each sent the message rendered "
                                                 "for them.")
    addresses = serializers.ListField(child=serializers.CharField(max_length=254),
                                      required=False, default=list,
                                      help_text="Addresses of the mailing's channel (emails, "
                                                "phones in E.164 form, push tokens).")
    sample_member_id = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1,
        help_text="For typed addresses: render for this member; omitted, the member fields "
                  "are empty.")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        from communications.services.test_sends import TEST_RECIPIENTS_MAX

        total = len(data["member_ids"]) + len(data["addresses"])
        if not total:
            raise serializers.ValidationError(
                {"member_ids": ["choose at least one member or type an address"]})
        if total > TEST_RECIPIENTS_MAX:
            field = "addresses" if data["addresses"] else "member_ids"
            raise serializers.ValidationError({field: [
                f"at most {TEST_RECIPIENTS_MAX} recipients per test send, {total} given"]})
        return data


class MailingTestMessageSerializer(serializers.ModelSerializer):
    """A test message and what the gateway answered."""

    class Meta:
        model = Message
        fields = ["id", "member", "channel", "address", "status", "provider_id", "error_code",
                  "error", "cost", "sent_at", "is_test"]
        read_only_fields = fields


class _SegmentsSerializer(serializers.Serializer):
    sample_size = serializers.IntegerField(help_text="Members the SMS was rendered for.")
    min = serializers.IntegerField()
    avg = serializers.FloatField()
    max = serializers.IntegerField()
    encodings = serializers.DictField(child=serializers.IntegerField(),
                                      help_text="Rendered texts per encoding: gsm7, ucs2.")
    render_failures = serializers.IntegerField()


class _ChannelCostSerializer(serializers.Serializer):
    channel = serializers.CharField()
    gateway = serializers.IntegerField(allow_null=True)
    gateway_name = serializers.CharField()
    price_per_message = serializers.DecimalField(max_digits=12, decimal_places=5,
                                                 allow_null=True,
                                                 help_text="Per SMS segment on SMS.")
    unit = serializers.ChoiceField(choices=["message", "segment"])
    reachable = serializers.IntegerField(help_text="After consents and suppressions.")
    segments = _SegmentsSerializer(allow_null=True)
    billable = serializers.IntegerField(help_text="Messages priced (SMS: segments).")
    cost = serializers.DecimalField(max_digits=16, decimal_places=5, allow_null=True)


class _AudienceCountsSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="target_group, static_list, member or blank.")
    size = serializers.IntegerField()
    estimated = serializers.BooleanField(help_text="The counts ran out of time: the "
                                                   "planner's estimate.")
    reachable = serializers.DictField(child=serializers.IntegerField())


class MailingCostEstimateSerializer(serializers.Serializer):
    audience = _AudienceCountsSerializer()
    channels = _ChannelCostSerializer(many=True)
    total_cost = serializers.DecimalField(max_digits=16, decimal_places=5)
    problems = serializers.DictField(child=serializers.CharField(),
                                     help_text="What is missing, by field.")


# --- the mailing report and the messaging calendar -----------------------------------------

def _counts(*names: str, **help_texts: str) -> dict[str, serializers.IntegerField]:
    return {name: serializers.IntegerField(help_text=help_texts.get(name, "")) for name in names}


_ReportAudienceSerializer = type("MailingReportAudienceSerializer", (serializers.Serializer,), {
    **_counts("reachable", "address_issue", "opted_out", "not_subscribed", "capped",
              "inactive", "quiet_hours_expired",
              reachable="Not skipped: sent, to be sent, or ended otherwise after the snapshot.",
              address_issue="Skipped: no address, suppressed, shared or unconfirmed address.",
              capped="Skipped by a frequency cap."),
})
_ReportFunnelSerializer = type("MailingReportFunnelSerializer", (serializers.Serializer,), {
    **_counts("queued", "sent", "delivered", "opened", "clicked",
              queued="Still to go out (created, queued, being sent).",
              sent="Handed to the provider, whatever happened next."),
})


class _ThroughputBucketSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    sent = serializers.IntegerField()
    per_minute = serializers.FloatField()


class _GatewayCostSerializer(serializers.Serializer):
    gateway_id = serializers.IntegerField(allow_null=True)
    gateway = serializers.CharField()
    messages = serializers.IntegerField(help_text="Messages with a cost.")
    cost = serializers.DecimalField(max_digits=16, decimal_places=5)


class _ErrorGroupSerializer(serializers.Serializer):
    gateway_id = serializers.IntegerField(allow_null=True)
    gateway = serializers.CharField()
    code = serializers.CharField(help_text="The provider's error code ('' when it gave none).")
    count = serializers.IntegerField()
    example = serializers.CharField(help_text="One error text of the group.")


class MailingReportSerializer(serializers.Serializer):
    mailing_id = serializers.IntegerField()
    state = serializers.CharField()
    channel = serializers.CharField(allow_null=True)
    generated_at = serializers.DateTimeField()
    frozen = serializers.BooleanField(help_text="The audience is frozen into messages.")
    live = serializers.BooleanField(help_text="Preparing or sending: the figures still move.")
    total = serializers.IntegerField()
    audience = _ReportAudienceSerializer()
    address_issues = serializers.DictField(child=serializers.IntegerField())
    funnel = _ReportFunnelSerializer()
    statuses = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="Messages per current status.")
    not_delivered = serializers.DictField(child=serializers.IntegerField())
    skipped_by_reason = serializers.DictField(child=serializers.IntegerField())
    bucket_minutes = serializers.IntegerField()
    throughput = _ThroughputBucketSerializer(many=True)
    cost_total = serializers.DecimalField(max_digits=16, decimal_places=5)
    cost_by_gateway = _GatewayCostSerializer(many=True)
    errors = _ErrorGroupSerializer(many=True)


class MailingCalendarQuerySerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First day, YYYY-MM-DD.")
    end = serializers.DateField(help_text=f"Last day, YYYY-MM-DD; at most {MAX_CALENDAR_DAYS} "
                                          f"days from the start.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = calendar_range_errors(start=attrs["start"], end=attrs["end"])
        if errors:
            raise serializers.ValidationError({field: [text] for field, text in errors.items()})
        return attrs


class _CalendarMailingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.CharField()
    channel = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(
        choices=["messages", "audience"],
        help_text="messages: counted from its frozen messages; audience: from its audience "
                  "reachable on its channel now.")
    times = serializers.ListField(child=serializers.DateTimeField())
    recurring_parent_id = serializers.IntegerField(allow_null=True)
    planned_run = serializers.BooleanField(
        help_text="A coming occurrence of a recurring mailing, not yet a mailing of its own.")
    members = serializers.IntegerField()
    error = serializers.CharField(help_text="Why its audience could not be read (members "
                                            "is then 0); usually empty.")


class _CalendarOverlapSerializer(serializers.Serializer):
    mailings = serializers.ListField(child=serializers.IntegerField())
    members = serializers.IntegerField()


class _CalendarDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    mailings = _CalendarMailingSerializer(many=True)
    members = serializers.IntegerField(help_text="Members who get anything that day.")
    overlap = serializers.IntegerField(help_text="Members who get two or more messages.")
    pairs = _CalendarOverlapSerializer(many=True)


class MessagingCalendarSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    days = _CalendarDaySerializer(many=True)


class TriggerSerializer(serializers.ModelSerializer):
    """What starts a trigger mailing's messages: `event_type` (with `conditions` on the
    payload, a `delay` and `cancel_on` events) or a `date_rule` (with `days` and `send_hour`).
    Checked as a whole when written; errors are keyed `trigger.<field>`."""

    class Meta:
        model = Trigger
        fields = list(TRIGGER_FIELDS)


class TriggerMailingSerializer(MailingSerializer):
    trigger = TriggerSerializer(read_only=True)

    class Meta(MailingSerializer.Meta):
        fields = [*MailingSerializer.Meta.fields, "trigger"]
        read_only_fields = fields


class TriggerMailingWriteSerializer(serializers.ModelSerializer):
    """A draft trigger mailing's fields and its trigger; it starts with the `activate`
    action."""

    trigger = TriggerSerializer()

    class Meta:
        model = Mailing
        fields = [*TRIGGER_MAILING_FIELDS, "trigger"]
