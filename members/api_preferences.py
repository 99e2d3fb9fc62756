"""The member's preferences for the app, under /api/v1/me/preferences/: marketing consent per
channel and subscription category, language and quiet hours (members.services.preferences).

Consent changed here is recorded in the ledger with source `app` when the app's token made
the call, `account_page` when the account pages' session did.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from members.api_me import MemberApiView, client_ip
from members.authentication import request_member
from members.models import Channel, ConsentSource
from members.services.preferences import (
    UNCHANGED,
    QuietHours,
    account_preferences_current,
    account_preferences_save,
)

TIME_FORMATS = ["%H:%M", "%H:%M:%S"]


class ChannelPreferenceSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(Channel.choices)
    label = serializers.CharField()
    subscribed = serializers.BooleanField(help_text="Marketing on this channel is allowed.")


class CategoryPreferenceSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    subscribed = serializers.BooleanField(
        help_text="False once the member left this kind of marketing on any channel.")


class QuietHoursSerializer(serializers.Serializer):
    starts_at = serializers.TimeField(format="%H:%M", input_formats=TIME_FORMATS,
                                      help_text="Local time (the member's time zone), HH:MM.")
    ends_at = serializers.TimeField(format="%H:%M", input_formats=TIME_FORMATS,
                                    help_text="Before starts_at: the quiet hours run past "
                                              "midnight (22:00 to 08:00).")


class PreferencesSerializer(serializers.Serializer):
    channels = ChannelPreferenceSerializer(
        many=True, source="consents.channels",
        help_text="The channels the member can be reached on or decided about.")
    categories = CategoryPreferenceSerializer(many=True, source="consents.categories")
    language = serializers.CharField(help_text="Of the pages, the app and the messages.")
    timezone = serializers.CharField(help_text="The time zone the quiet hours are read in; "
                                               "changed with PATCH /api/v1/me/.")
    quiet_hours = QuietHoursSerializer(
        allow_null=True, help_text="No marketing on any channel in these hours; null: none.")
    email_confirmation_pending = serializers.BooleanField(
        help_text="Email marketing waits for the member to confirm the address (double "
                  "opt-in): a confirmation message is sent when they allow email.")


class ChannelsChangeSerializer(serializers.Serializer):
    """One optional switch per channel; a channel left out stays as it is."""

    email = serializers.BooleanField(required=False)
    sms = serializers.BooleanField(required=False)
    push = serializers.BooleanField(required=False)
    viber = serializers.BooleanField(required=False)
    social = serializers.BooleanField(required=False)


class PreferencesChangeSerializer(serializers.Serializer):
    channels = ChannelsChangeSerializer(required=False, help_text="Allow (true) or refuse "
                                                                  "(false) marketing per "
                                                                  "channel.")
    categories = serializers.DictField(
        child=serializers.BooleanField(), required=False,
        help_text="Subscription category code -> subscribed, on every channel.")
    language = serializers.ChoiceField(settings.LANGUAGES, required=False)
    quiet_hours = QuietHoursSerializer(required=False, allow_null=True,
                                       help_text="null removes the quiet hours.")


def _consent_source(request: Request) -> str:
    # The account pages call with their session, the app with its token.
    return (ConsentSource.APP if getattr(request.user, "token", None) is not None
            else ConsentSource.ACCOUNT_PAGE)


class PreferencesView(MemberApiView):
    @extend_schema(responses=PreferencesSerializer,
                   description="The member's channels, subscription categories, language and "
                               "quiet hours.")
    def get(self, request: Request) -> Response:
        member = request_member(request)
        return Response(PreferencesSerializer(account_preferences_current(member=member)).data)

    @extend_schema(
        request=PreferencesChangeSerializer, responses={200: PreferencesSerializer},
        description="Change what is sent; what is left out stays as it is. Consent changes "
                    "are recorded in the consent ledger (source `app`). A channel the member "
                    "has no address on is refused as `channels.<channel>`, an unknown "
                    "category as `categories.<code>`; nothing changes when any part is "
                    "refused.")
    def put(self, request: Request) -> Response:
        member = request_member(request)
        body = PreferencesChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data: dict[str, Any] = body.validated_data
        quiet = UNCHANGED
        if "quiet_hours" in data:
            quiet = QuietHours(**data["quiet_hours"]) if data["quiet_hours"] else None
        try:
            account_preferences_save(
                member=member, source=_consent_source(request),
                channels=data.get("channels"), categories=data.get("categories"),
                language=data.get("language"), quiet_hours=quiet,
                ip_address=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        member.refresh_from_db()
        return Response(PreferencesSerializer(account_preferences_current(member=member)).data)
