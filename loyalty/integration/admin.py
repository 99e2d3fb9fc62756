"""Admin screens of the integration API: API keys (the key shown once, on creation or
rotation), custom event types with their payload schema, and vouchers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from loyalty.integration.keys import api_key_create, api_key_revoke, api_key_rotate
from loyalty.integration.models import ApiKey, CustomEventType, Voucher


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices,
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "expires_at"]


def _show_key(request: HttpRequest, api_key: ApiKey, key: str) -> None:
    messages.warning(request, f"The key of “{api_key.name}”, shown this once — copy it now: "
                              f"{key}")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "expires_at",
                    "revoked_at"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "=prefix"]
    actions = ["rotate", "revoke"]

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, **kwargs: Any) -> Any:
        if obj is not None:
            # A key's scopes are part of what its holder was given: change them by a new key.
            kwargs["fields"] = ["name", "expires_at"]
            return forms.modelform_factory(ApiKey, fields=kwargs["fields"])
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created, key = api_key_create(name=obj.name, scopes=form.cleaned_data["scopes"],
                                      by=request.user, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.created_at = created.pk, created.prefix, created.created_at
        _show_key(request, created, key)

    @admin.action(description="Rotate: new key, the old one valid for the grace period",
                  permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            try:
                new, key = api_key_rotate(api_key=api_key, by=request.user)
            except ValidationError as exc:
                messages.error(request, f"{api_key}: {' '.join(exc.messages)}")
                continue
            _show_key(request, new, key)

    @admin.action(description="Revoke: stop the keys now", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        messages.success(request, f"{queryset.count()} keys revoked.")


@admin.register(CustomEventType)
class CustomEventTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]


@admin.register(Voucher)
class VoucherAdmin(admin.ModelAdmin):
    list_display = ["code", "member", "kind", "value", "issued_at", "expires_at", "redeemed_at"]
    list_select_related = ["member"]
    search_fields = ["=code", "=member__external_id"]
    show_full_result_count = False
    raw_id_fields = ["member"]
    # Issued and redeemed through the integration API, which writes their events.
    readonly_fields = ["issued_at", "redeemed_at"]
