"""Marketer screens of outgoing webhooks: subscriptions (the secret shown once, on create and on
rotation; a connector's credentials typed in, checked by the connector, and afterwards shown
only masked: a secret field left blank keeps what is stored), and deliveries with their attempt
log and a replay action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from loyalty.models import Event
from loyalty.webhooks.connectors import CONNECTORS
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import events_relay_nudge
from loyalty.webhooks.services import EDITABLE as SUBSCRIPTION_FIELDS
from loyalty.webhooks.services import (
    deliveries_replay,
    subscription_create,
    subscription_credentials_clean,
    subscription_secret_rotate,
    subscription_update,
)


def _credential_specs() -> dict[str, tuple[str, bool, list[str]]]:
    """Each credential name any connector takes: its label, whether it is secret, and the
    connectors (with their hint) that use it."""
    specs: dict[str, tuple[str, bool, list[str]]] = {}
    for name, connector in CONNECTORS.items():
        for spec in connector.credential_fields:
            label, secret, uses = specs.get(spec.name, (spec.label, spec.secret, []))
            uses.append(f"{name}: {spec.help_text}" if spec.help_text else name)
            specs[spec.name] = (label, secret or spec.secret, uses)
    return specs


CREDENTIALS = _credential_specs()


def credential_mask(value: str) -> str:
    return f"…{value[-4:]}" if len(value) > 8 else "…"


def _credential_field(name: str) -> forms.CharField:
    label, secret, uses = CREDENTIALS[name]
    return forms.CharField(label=label, required=False, help_text="; ".join(uses),
                           widget=forms.PasswordInput(render_value=False) if secret else None)


class SubscriptionForm(forms.ModelForm):
    # Left out (a form posted by a script), it is the standard webhook it always was.
    connector = forms.ChoiceField(choices=WebhookSubscription.Connector.choices, required=False,
                                  initial=WebhookSubscription.Connector.STANDARD)
    url = forms.URLField(max_length=2000, assume_scheme="https", required=False,
                         help_text=WebhookSubscription._meta.get_field("url").help_text)
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type.")

    # Every credential any connector takes; the chosen connector's are checked in clean().
    api_key = _credential_field("api_key")
    list_id = _credential_field("list_id")
    write_key = _credential_field("write_key")

    class Meta:
        model = WebhookSubscription
        fields = list(SUBSCRIPTION_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance.credentials() if self.instance.pk else {}
        for name, value in stored.items():
            if CREDENTIALS[name][1]:
                self.fields[name].help_text = (f"Stored: {credential_mask(value)}; leave "
                                               f"blank to keep it. {self.fields[name].help_text}")
            else:
                self.fields[name].initial = value

    def clean_connector(self) -> str:
        return self.cleaned_data["connector"] or WebhookSubscription.Connector.STANDARD

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        connector = cleaned.get("connector") or WebhookSubscription.Connector.STANDARD
        own = {spec.name for spec in CONNECTORS[connector].credential_fields}
        kept = (self.instance.credentials()
                if self.instance.pk and self.instance.connector == connector else {})
        raw: dict[str, str] = {}
        for name in CREDENTIALS:
            typed = cleaned.get(name) or ""
            if name not in own:
                if typed:
                    self.add_error(name, f"Not used by the {connector} connector.")
                continue
            raw[name] = typed or kept.get(name, "")
        try:
            self.credentials = subscription_credentials_clean(connector=connector, raw=raw)
        except ValidationError as exc:
            for name, texts in exc.message_dict.items():
                self.add_error(name if name in self.fields else None, texts)
        return cleaned


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["__str__", "connector", "url", "active", "ordered", "failing_since",
                    "disabled_at"]
    list_filter = ["connector", "active", "ordered"]
    search_fields = ["url", "description"]
    readonly_fields = ["created_by", "created_at", "healthy_since", "probe_at", "failing_since",
                       "disabled_at", "disabled_reason"]
    actions = ["rotate_secret"]

    def save_model(self, request: HttpRequest, obj: WebhookSubscription, form: Any,
                   change: bool) -> None:
        fields = {key: form.cleaned_data[key] for key in SUBSCRIPTION_FIELDS
                  if key in form.cleaned_data}
        if change:
            subscription_update(subscription=obj, credentials=form.credentials, **fields)
            return
        created, secret = subscription_create(by=request.user, credentials=form.credentials,
                                              **fields)
        obj.pk = created.pk
        if created.connector == WebhookSubscription.Connector.STANDARD:
            # A platform connector authenticates with its credentials; its secret signs nothing.
            self.message_user(request, f"The signing secret, shown this once: {secret}",
                              messages.WARNING)

    @admin.action(description="Rotate the signing secret (the old one stays valid a while)",
                  permissions=["change"])
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

    @admin.action(description="Replay the selected deliveries", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_replay(ids=list(queryset.values_list("id", flat=True)))
        transaction.on_commit(events_relay_nudge)
        self.message_user(request, f"{count} deliveries will be sent again.")
