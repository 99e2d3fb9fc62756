from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from members.models import (
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    Member,
    Purpose,
    SubscriptionCategory,
    Suppression,
)

MEMBER_FIELDS = [
    "id", "external_id", "first_name", "last_name", "email", "email_verified_at", "phone",
    "phone_verified_at", "birth_date", "gender", "language", "timezone", "city", "region",
    "country", "latitude", "longitude", "registered_at", "registration_source", "status",
    "custom_attributes", "created_at", "updated_at",
]
# The sources a staff caller may claim; the others belong to their own doors (the unsubscribe
# link, SMS STOP, double opt-in, erasure).
API_CONSENT_SOURCES = [str(source) for source in (
    ConsentSource.API, ConsentSource.APP, ConsentSource.ACCOUNT_PAGE, ConsentSource.IMPORT,
    ConsentSource.SUPPORT)]


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = Member
        fields = MEMBER_FIELDS
        read_only_fields = fields


class MemberChangeSerializer(serializers.Serializer):
    """The profile fields a caller may send; every one is optional (a PATCH stays partial).

    This describes the body for the schema only: the view hands the body to `member_upsert`,
    whose `member_fields_clean` is the one validator of profile values (it also refuses keys it
    does not know, which a serializer would silently drop).
    """

    first_name = serializers.CharField(required=False, allow_blank=True)
    last_name = serializers.CharField(required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(
        required=False, allow_blank=True,
        help_text="Any usual form; numbers without a country code are read in `country`.")
    birth_date = serializers.DateField(required=False, allow_null=True)
    gender = serializers.ChoiceField(Member.Gender.choices, required=False, allow_blank=True)
    language = serializers.CharField(required=False, help_text="For example en or pt-BR.")
    timezone = serializers.CharField(required=False, help_text="IANA, for example Europe/Berlin.")
    city = serializers.CharField(required=False, allow_blank=True)
    region = serializers.CharField(required=False, allow_blank=True)
    country = serializers.CharField(required=False, allow_blank=True,
                                    help_text="ISO 3166-1 alpha-2, for example DE.")
    latitude = serializers.FloatField(required=False, allow_null=True)
    longitude = serializers.FloatField(required=False, allow_null=True)
    registered_at = serializers.DateTimeField(required=False, allow_null=True)
    registration_source = serializers.CharField(required=False, allow_blank=True)
    # The full choice set keeps one status enum in the schema; erasure has its own request.
    status = serializers.ChoiceField(Member.Status.choices, required=False,
                                     help_text="active or blocked.")
    custom_attributes = serializers.DictField(
        required=False,
        help_text="Declared keys only; merged into the stored values, null removes a key.")


class MemberUpsertSerializer(MemberChangeSerializer):
    external_id = serializers.CharField(max_length=64)


class ConsentSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Consent
        fields = ["channel", "purpose", "category", "state", "source", "recorded_at"]
        read_only_fields = fields


class ConsentEventSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ConsentEvent
        fields = ["id", "channel", "purpose", "category", "action", "source", "recorded_at",
                  "ip_address", "user_agent", "consent_text", "reason", "actor"]
        read_only_fields = fields


# Documented as text: an enum of this subset would collide in the schema with the full
# ConsentSource enum of the responses (drf-spectacular names both "SourceEnum").
@extend_schema_field({"type": "string", "default": "api",
                      "description": f"One of {', '.join(API_CONSENT_SOURCES)}."})
class ApiConsentSourceField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [(value, ConsentSource(value).label) for value in API_CONSENT_SOURCES], **kwargs)


class ConsentRecordSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(Channel.choices)
    purpose = serializers.ChoiceField(Purpose.choices, default=Purpose.MARKETING)
    category = serializers.SlugRelatedField(
        slug_field="code", queryset=SubscriptionCategory.objects.all(), required=False,
        allow_null=True, help_text="Code of a subscription category; omit for the whole channel.")
    action = serializers.ChoiceField(ConsentEvent.Action.choices)
    source = ApiConsentSourceField(default=ConsentSource.API)
    consent_text = serializers.CharField(required=False, allow_blank=True, default="")
    ip_address = serializers.IPAddressField(required=False, allow_null=True, default=None)
    user_agent = serializers.CharField(required=False, allow_blank=True, default="")
    reason = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text='Required when source is "support".')


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Why; kept in the audit log.")


class SuppressionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Suppression
        fields = ["id", "channel", "address", "reason", "source", "note", "created_at",
                  "created_by"]
        read_only_fields = fields


class SuppressionCreateSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(Channel.choices)
    address = serializers.CharField(help_text="Email address or phone number.")
    reason = serializers.ChoiceField(Suppression.Reason.choices)
    source = serializers.CharField(required=False, allow_blank=True, default="api",
                                   max_length=64)
    note = serializers.CharField(required=False, allow_blank=True, default="")
