"""Webhook subscriptions and their deliveries over the staff API (/api/v1/webhooks/, staff with
the webhook permissions).

The secret is in the answer to a create and to `rotate-secret` only; it cannot be read again.
A URL that resolves to a private address is a 400 on `url` (unless
ENGAGE_WEBHOOK_ALLOW_PRIVATE). A platform connector's `credentials` are write-only: checked by
the connector (a wrong one is a 400 under `credentials`, keyed by the credential), stored
sealed, never answered; on an update, the credentials not given stay as they are.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import service_call
from loyalty.models import Event
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import events_relay_nudge
from loyalty.webhooks.services import (
    deliveries_replay,
    subscription_create,
    subscription_credentials_clean,
    subscription_secret_rotate,
    subscription_update,
)


class SubscriptionSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.CharField(max_length=64),
                                        required=False, allow_empty=True)
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True), write_only=True, required=False,
        help_text="The connector's credentials: klaviyo {api_key}, mailchimp {api_key, "
                  "list_id}, segment {write_key}; never answered.")

    class Meta:
        model = WebhookSubscription
        fields = ["id", "connector", "url", "description", "event_types", "active", "ordered",
                  "owner_email", "credentials", "created_at", "healthy_since", "probe_at",
                  "failing_since", "disabled_at", "disabled_reason"]
        read_only_fields = ["created_at", "healthy_since", "probe_at", "failing_since",
                            "disabled_at", "disabled_reason"]

    def validate(self, attrs: dict) -> dict:
        instance = self.instance
        connector = attrs.get("connector", instance.connector if instance else
                              WebhookSubscription.Connector.STANDARD)
        given = attrs.get("credentials")
        if given is None and instance is not None and connector == instance.connector:
            return attrs
        kept = (instance.credentials()
                if instance is not None and connector == instance.connector else {})
        try:
            attrs["credentials"] = subscription_credentials_clean(
                connector=connector, raw={**kept, **(given or {})})
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"credentials": exc.message_dict}) from exc
        return attrs

    def validate_event_types(self, value: list[str]) -> list[str]:
        known = set(Event.Type.values)
        unknown = [name for name in value if name not in known]
        if unknown:
            raise serializers.ValidationError(f"Unknown event types: {', '.join(unknown)}.")
        return list(dict.fromkeys(value))


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    secret = serializers.CharField(read_only=True,
                                   help_text="Shown once: keep it to verify signatures.")

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField()


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "duration_ms", "response_excerpt", "error"]


class DeliverySerializer(serializers.ModelSerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "subscription", "event", "status", "attempts", "next_attempt_at",
                  "last_status_code", "last_error", "created_at", "completed_at",
                  "attempt_log"]


class WebhookSubscriptionViewSet(viewsets.ModelViewSet):
    serializer_class = SubscriptionSerializer
    queryset = WebhookSubscription.objects.all()

    @extend_schema(responses={201: SubscriptionCreatedSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription, secret = service_call(lambda: subscription_create(
            by=request.user, **serializer.validated_data))
        subscription.secret = secret
        return Response(SubscriptionCreatedSerializer(subscription).data,
                        status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: SubscriptionSerializer) -> None:
        service_call(lambda: subscription_update(subscription=serializer.instance,
                                                 **serializer.validated_data))

    @extend_schema(request=None, responses=SecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        secret = subscription_secret_rotate(subscription=self.get_object())
        return Response({"secret": secret})

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        queryset = (WebhookDelivery.objects.filter(subscription=self.get_object())
                    .prefetch_related("attempt_log"))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class WebhookDeliveryViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = DeliverySerializer
    queryset = WebhookDelivery.objects.prefetch_related("attempt_log")

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        delivery = self.get_object()
        deliveries_replay(ids=[delivery.pk])
        transaction.on_commit(events_relay_nudge)
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
