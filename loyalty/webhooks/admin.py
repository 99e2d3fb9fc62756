"""Marketer screens of outgoing webhooks: subscriptions (the secret shown once, on create and on
rotation), and deliveries with their attempt log and a replay action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from loyalty.models import Event
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import events_relay_nudge
from loyalty.webhooks.services import EDITABLE as SUBSCRIPTION_FIELDS
from loyalty.webhooks.services import (
    deliveries_replay,
    subscription_create,
    subscription_secret_rotate,
    subscription_update,
)


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https",
                         help_text=WebhookSubscription._meta.get_field("url").help_text)
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type.")

    class Meta:
        model = WebhookSubscription
        fields = list(SUBSCRIPTION_FIELDS)


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["url", "description", "active", "ordered", "failing_since", "disabled_at"]
    list_filter = ["active", "ordered"]
    search_fields = ["url", "description"]
    readonly_fields = ["created_by", "created_at", "failing_since", "disabled_at",
                       "disabled_reason"]
    actions = ["rotate_secret"]

    def save_model(self, request: HttpRequest, obj: WebhookSubscription, form: Any,
                   change: bool) -> None:
        fields = {key: form.cleaned_data[key] for key in SUBSCRIPTION_FIELDS
                  if key in form.cleaned_data}
        if change:
            subscription_update(subscription=obj, **fields)
            return
        created, secret = subscription_create(by=request.user, **fields)
        obj.pk = created.pk
        self.message_user(request, f"The signing secret, shown this once: {secret}",
                          messages.WARNING)

    @admin.action(description="Rotate the signing secret (the old one stays valid a while)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> None:
        for subscription in queryset:
            secret = subscription_secret_rotate(subscription=subscription)
            self.message_user(request, f"{subscription.url}: the new secret, shown this once: "
                                       f"{secret}", messages.WARNING)


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "duration_ms", "error", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "subscription", "event", "status", "attempts", "last_status_code",
                    "next_attempt_at", "completed_at"]
    list_filter = ["status", "subscription"]
    list_select_related = ["subscription", "event"]
    search_fields = ["=event__id"]
    show_full_result_count = False
    readonly_fields = ["subscription", "event", "member_id", "status", "attempts",
                       "next_attempt_at", "claimed_until", "last_status_code", "last_error",
                       "created_at", "completed_at"]
    inlines = [AttemptInline]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay the selected deliveries")
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_replay(ids=list(queryset.values_list("id", flat=True)))
        transaction.on_commit(events_relay_nudge)
        self.message_user(request, f"{count} deliveries will be sent again.")
