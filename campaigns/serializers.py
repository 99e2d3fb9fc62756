from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from campaigns import services
from campaigns.models import Campaign, PromoContent, StaticList, TargetGroup
from campaigns.rules import rules_error_lines, rules_validate
from campaigns.selectors import offer_status
from campaigns.selectors_spend import budget_remaining, campaign_channels, campaign_spent
from config.api import service_call


class RulesField(serializers.JSONField):
    default_error_messages = {"invalid": "must be a rule tree (JSON)"}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The rule tree: see docs/target-groups.md and "
                                       "GET target-groups/fields/.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        # A form's "null" is JSON for None, which no tree is (and the column refuses).
        value = super().to_internal_value(data)
        if value is None:
            self.fail("null")
        return value


class TargetGroupSerializer(serializers.ModelSerializer):
    rules = RulesField(required=False)

    class Meta:
        model = TargetGroup
        fields = ["id", "name", "description", "rules", "is_watched", "watched_since",
                  "created_at", "updated_at"]
        read_only_fields = ["is_watched", "watched_since", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        rules = attrs.get("rules", getattr(self.instance, "rules", {}))
        try:
            rules_validate(rules, target_group=self.instance)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"rules": rules_error_lines(error)}) from error
        return attrs


class RulesPreviewSerializer(serializers.Serializer):
    rules = RulesField()
    sample_size = serializers.IntegerField(min_value=0, max_value=100, default=10)


class AudiencePreviewSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    estimated = serializers.BooleanField(
        help_text="True when the exact count ran past ENGAGE_SEGMENT_COUNT_TIMEOUT and the "
                  "figures are PostgreSQL's planner estimates.")
    reachable = serializers.DictField(child=serializers.IntegerField(),
                                      help_text="Members reachable per channel.")
    sample = serializers.ListField(child=serializers.DictField())


class FreezeSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                 help_text="The static list's name; default: group and time.")


class StaticListSerializer(serializers.ModelSerializer):
    class Meta:
        model = StaticList
        fields = ["id", "name", "description", "source", "frozen_from", "taken_at", "size",
                  "created_at"]
        read_only_fields = fields


class StaticListCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    member_ids = serializers.ListField(child=serializers.IntegerField(min_value=1),
                                       required=False, default=list)
    external_ids = serializers.ListField(child=serializers.CharField(max_length=64),
                                         required=False, default=list)
    file = serializers.FileField(required=False, help_text=(
        "A CSV of external ids: an `external_id` column, or the first column."))


class MemberOfferSerializer(serializers.ModelSerializer):
    """An offer as the member's app shows it: small, since the home call carries them."""

    class Meta:
        model = PromoContent
        fields = ["id", "title", "text", "image_url", "link_url", "link_label", "starts_at",
                  "ends_at"]
        read_only_fields = fields


class OfferSerializer(serializers.ModelSerializer):
    """An offer as marketers manage it; saved through `promo_content_save`."""

    status = serializers.SerializerMethodField(
        help_text="scheduled (not shown yet), showing, ended, or off (switched off).")
    views = serializers.IntegerField(read_only=True, default=0)
    clicks = serializers.IntegerField(read_only=True, default=0)
    click_rate = serializers.FloatField(read_only=True, allow_null=True, default=None,
                                        help_text="Clicks per view; null before any view.")

    class Meta:
        model = PromoContent
        fields = ["id", "title", "text", "image_url", "link_url", "link_label", "priority",
                  "campaign", "placement", "target_group", "starts_at", "ends_at",
                  "show_days_before", "shown_from", "is_active", "status", "views", "clicks",
                  "click_rate", "created_at", "updated_at"]
        read_only_fields = ["shown_from", "created_at", "updated_at"]
        # Checked by the model in promo_content_save, so every error comes back at once.
        extra_kwargs = {"image_url": {"validators": []}}

    def get_status(self, offer: PromoContent) -> str:
        return offer_status(offer)

    def create(self, validated_data: dict[str, Any]) -> PromoContent:
        return service_call(lambda: services.promo_content_save(
            offer=PromoContent(**validated_data)))

    def update(self, offer: PromoContent, validated_data: dict[str, Any]) -> PromoContent:
        for name, value in validated_data.items():
            setattr(offer, name, value)
        return service_call(lambda: services.promo_content_save(offer=offer))


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign with what it has spent against its budget and the channels its mailings
    use; on a list these come with the rows (`selectors_spend.campaigns_with_spend`)."""

    spend = serializers.SerializerMethodField(
        help_text="What its messages cost so far (test sends excluded), in its currency.")
    remaining = serializers.SerializerMethodField(
        help_text="Budget minus spend (negative once overspent); null without a budget.")
    channels = serializers.SerializerMethodField(
        help_text="The channels of its mailings and their cascade steps.")

    class Meta:
        model = Campaign
        fields = ["id", "name", "goal", "owner", "status", "starts_on", "ends_on", "budget",
                  "currency", "attribution_touch", "attribution_window_days", "spend",
                  "remaining", "channels", "created_at"]
        read_only_fields = ["created_at"]

    def get_spend(self, campaign: Campaign) -> str:
        return str(campaign_spent(campaign))

    def get_remaining(self, campaign: Campaign) -> str | None:
        left = budget_remaining(budget=campaign.budget, spent=campaign_spent(campaign))
        return None if left is None else str(left)

    def get_channels(self, campaign: Campaign) -> list[str]:
        return campaign_channels(campaign)


class MailingResultSerializer(serializers.Serializer):
    mailing = serializers.IntegerField(source="mailing_id")
    name = serializers.CharField()
    state = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    audience = serializers.IntegerField()
    funnel = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="sent, delivered, opened, clicked (cumulative).")
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    held_out = serializers.IntegerField()
    spent = serializers.DecimalField(max_digits=20, decimal_places=5)
    orders = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=20, decimal_places=2)
    conversion = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    roi = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    lift = serializers.SerializerMethodField(
        help_text="With a control group: each group's members, converted members, revenue and "
                  "rates, and the lift with its 95% interval; null without one.")

    def get_lift(self, result: Any) -> dict[str, Any] | None:
        lift = self.context.get("lifts", {}).get(result.mailing_id)
        return None if lift is None else lift.as_dict()


class CampaignReportSerializer(serializers.Serializer):
    """A campaign's figures (campaigns.selectors_metrics has the definitions); a ratio whose
    divisor is zero is null."""

    campaign = serializers.IntegerField(source="campaign_id")
    currency = serializers.CharField()
    budget = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    spent = serializers.DecimalField(max_digits=20, decimal_places=5)
    messages_sent = serializers.IntegerField()
    members_reached = serializers.IntegerField()
    orders = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=20, decimal_places=2)
    average_order = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    active_members = serializers.IntegerField()
    discounts = serializers.DecimalField(max_digits=20, decimal_places=2)
    points = serializers.IntegerField()
    cost_per_member_reached = serializers.DecimalField(max_digits=20, decimal_places=5,
                                                       allow_null=True)
    acquisition_cost = serializers.DecimalField(max_digits=20, decimal_places=5, allow_null=True)
    conversion = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    roi = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    mailings = MailingResultSerializer(many=True)
