"""Gateways: settings with their secrets masked, health, circuit, and a test send."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from communications.admin.editing import (
    busy_states,
)
from communications.circuits import circuit_open_seconds
from communications.gateways import GATEWAYS
from communications.models import (
    Gateway,
)
from communications.secrets import SecretsUnreadable, secret_setting_names
from communications.services.gateways import (
    TEST_TEXT_MAX,
    GatewayTestResult,
    gateway_health_check,
    gateway_test_send,
)


def _provider_choices() -> list[tuple[str, str]]:
    return [(key, key) for key in sorted(GATEWAYS)]


# Form fields `secret_<setting>`: one password input per secret setting of any provider.
SECRET_FIELD = "secret_"
SECRET_SET_TEXT = "••• set: leave blank to keep it."


def _with_secret_fields(form_class: type[forms.ModelForm]) -> type[forms.ModelForm]:
    """Adds a password input for each secret setting any provider has (the admin shows a
    gateway those of its own provider); the secret is never rendered back into the page."""
    providers_of: dict[str, list[str]] = {}
    for provider in sorted(GATEWAYS):
        for name in secret_setting_names(provider):
            providers_of.setdefault(name, []).append(provider)
    for name, providers in providers_of.items():
        field = forms.CharField(
            required=False, strip=False, label=name.replace("_", " "),
            widget=forms.PasswordInput(render_value=False,
                                       attrs={"autocomplete": "new-password"}),
            help_text=f"Secret setting of {', '.join(providers)}, stored encrypted.")
        form_class.base_fields[SECRET_FIELD + name] = field
        form_class.declared_fields[SECRET_FIELD + name] = field
    return form_class


@_with_secret_fields
class GatewayForm(forms.ModelForm):
    provider = forms.ChoiceField(
        choices=_provider_choices, help_text=Gateway._meta.get_field("provider").help_text
    )
    secrets_clear = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Remove secrets",
        help_text="Secret settings to delete (to change one, type the new value above).")

    class Meta:
        model = Gateway
        fields = ["name", "channel", "provider", "settings", "sender", "price_per_message",
                  "is_active", "backup"]
        help_texts = {"settings": (
            "Provider settings as JSON, e.g. host, port, use_tls; rate_per_second caps what "
            "every worker together sends through this gateway. Passwords, keys and tokens go "
            "in the secret fields below (typed here, they are moved there when saved).")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            stored = set(self.instance.secret_names()) if self.instance.pk else set()
        except SecretsUnreadable:
            stored = set()
        for name, field in self.fields.items():
            if name.startswith(SECRET_FIELD):
                state = SECRET_SET_TEXT if name[len(SECRET_FIELD):] in stored else "Not set."
                field.help_text = f"{state} {field.help_text}"
        if "secrets_clear" in self.fields:
            self.fields["secrets_clear"].choices = [(name, name) for name in sorted(stored)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        typed = {name[len(SECRET_FIELD):]: value for name, value in cleaned.items()
                 if name.startswith(SECRET_FIELD) and value}
        clear = cleaned.get("secrets_clear") or []
        if typed or clear:
            # On the instance before the model's clean(), which validates the settings the
            # adapter will get: plain and secret together.
            try:
                self.instance.secrets_set(typed, clear=clear)
            except SecretsUnreadable as exc:
                raise ValidationError(str(exc)) from exc
        return cleaned


class GatewayTestSendForm(forms.Form):
    address = forms.CharField(
        max_length=254, help_text="An email address, a phone number with its country code "
                                  "(+…) or a push token: what the gateway's channel sends to.")
    subject = forms.CharField(max_length=200, required=False,
                              help_text="Email and push; blank: “Test of gateway <name>”.")
    text = forms.CharField(max_length=TEST_TEXT_MAX, widget=forms.Textarea(attrs={"rows": 4}))


CHECK_HEALTH = "_check_health"


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    form = GatewayForm
    list_display = ["name", "channel", "provider", "is_active", "price_per_message", "circuit",
                    "health"]
    list_filter = ["channel", "provider", "is_active"]
    search_fields = ["name"]
    actions = ["check_health_now"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Gateway | None = None) -> Sequence[str]:
        tools = ["health", "gateway_tools"] if obj is not None else []
        # Scheduled and sending mailings were checked against this channel.
        if obj is not None and busy_states(obj.mailings.all()):
            return ["channel", "circuit", *tools]
        return ["circuit", *tools]

    def get_fields(self, request: HttpRequest, obj: Gateway | None = None) -> Sequence[str]:
        """A new gateway gets every provider's secret fields, an existing one its provider's
        (and the remove box once it has any)."""
        fields = list(super().get_fields(request, obj))
        if obj is None:
            return [name for name in fields if name != "secrets_clear"]
        own = set(secret_setting_names(obj.provider))
        try:
            has_secrets = bool(obj.secret_names())
        except SecretsUnreadable:
            has_secrets = False
        return [name for name in fields
                if (not name.startswith(SECRET_FIELD) or name[len(SECRET_FIELD):] in own)
                and (name != "secrets_clear" or has_secrets)]

    def get_urls(self) -> list[URLPattern]:
        view, name = self.admin_site.admin_view, f"{self.opts.app_label}_{self.opts.model_name}"
        return [path("<path:object_id>/send-test/", view(self.send_test_view),
                     name=f"{name}_send_test"),
                *super().get_urls()]

    @admin.action(description="Check health now", permissions=["change"])
    def check_health_now(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> None:
        checked = [gateway_health_check(gateway=gateway) for gateway in queryset]
        failing = [gateway.name for gateway in checked if not gateway.last_health_ok]
        if failing:
            self.message_user(request, f"{len(checked)} gateway(s) checked; failing: "
                                       f"{', '.join(failing)}.", messages.WARNING)
        else:
            self.message_user(request, f"{len(checked)} gateway(s) checked, all healthy.")

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send one message through the gateway now (and check its health), with the
        provider's classified answer."""
        gateway = self.get_object(request, unquote(object_id))
        if gateway is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, gateway):
            raise PermissionDenied
        form, result = GatewayTestSendForm(), None
        if request.method == "POST" and CHECK_HEALTH in request.POST:
            gateway_health_check(gateway=gateway)
            self.message_user(request, f"Health: {'ok' if gateway.last_health_ok else 'failing'}"
                                       f" — {gateway.last_health_detail}",
                              messages.SUCCESS if gateway.last_health_ok else messages.WARNING)
            return HttpResponseRedirect(request.path)
        if request.method == "POST":
            form = GatewayTestSendForm(request.POST)
            if form.is_valid():
                result = self._test_send(request, gateway, form)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "original": gateway, "title": f"Send a test: {gateway.name}", "form": form,
                   "result": result, "health": self.health(gateway),
                   "check_health": CHECK_HEALTH}
        return TemplateResponse(request, "admin/communications/gateway/send_test.html", context)

    def _test_send(self, request: HttpRequest, gateway: Gateway,
                   form: GatewayTestSendForm) -> GatewayTestResult | None:
        try:
            result = gateway_test_send(gateway=gateway, address=form.cleaned_data["address"],
                                       subject=form.cleaned_data["subject"],
                                       text=form.cleaned_data["text"], by=request.user)
        except ValidationError as error:
            for field, texts in error.message_dict.items():
                form.add_error(field if field in form.fields else None, texts)
            return None
        self.log_change(request, gateway, f"Test send to {result.message.address}: "
                                          f"{result.message.status}")
        return result

    @admin.display(description="health")
    def health(self, gateway: Gateway) -> str:
        if gateway.last_health_at is None:
            return "not checked yet"
        state = "ok" if gateway.last_health_ok else "failing"
        return format_html('<span class="gateway-health gateway-health-{}" title="{}">{}</span>'
                           " · {} ago · {}", state, gateway.last_health_detail, state,
                           timesince(gateway.last_health_at), gateway.last_health_detail)

    @admin.display(description="test and health")
    def gateway_tools(self, gateway: Gateway) -> str:
        url = reverse("admin:communications_gateway_send_test", args=[gateway.pk],
                      current_app=self.admin_site.name)
        return format_html('<a class="button" href="{}">Send a test / check health now</a>',
                           url)

    @admin.display(description="circuit")
    def circuit(self, gateway: Gateway) -> str:
        if gateway.pk is None:
            return "—"
        remaining = circuit_open_seconds(gateway_id=gateway.pk)
        if not remaining:
            return "closed"
        via = f", sending through {gateway.backup}" if gateway.backup_id else ""
        return f"open for {remaining:.0f} s more{via}"


