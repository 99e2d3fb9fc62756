"""Consent ledger, subscription categories, custom attributes, suppressions and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from members.admin.common import (
    MemberRowSearch,
    ReadOnlyAdmin,
    ReasonForm,
    admin_form_wrap,
    form_errors_add,
    saved_adopt,
)
from members.filters import phone_or_none
from members.models import (
    AuditEntry,
    Consent,
    ConsentEvent,
    CustomAttribute,
    SubscriptionCategory,
    Suppression,
)
from members.services import (
    address_normalize,
    suppression_add,
    suppression_remove,
)
from members.services.suppressions import SUPPRESSIBLE_CHANNELS


@admin.register(Consent)
class ConsentAdmin(MemberRowSearch, ReadOnlyAdmin):
    list_display = ["member", "channel", "purpose", "category", "state", "source",
                    "recorded_at"]
    list_filter = ["channel", "purpose", "state", "source"]
    list_select_related = ["member", "category"]
    show_full_result_count = False


@admin.register(ConsentEvent)
class ConsentEventAdmin(MemberRowSearch, ReadOnlyAdmin):
    list_display = ["recorded_at", "member", "channel", "purpose", "category", "action",
                    "source", "actor"]
    list_filter = ["channel", "action", "source"]
    list_select_related = ["member", "category", "actor"]
    show_full_result_count = False
    # Newest rows by id, which the primary key serves; ordering the whole ledger by time would
    # sort it on every page.
    ordering = ["-id"]


class KeyedAdmin(admin.ModelAdmin):
    """A row that imports, the API and stored data name by a key: the key is fixed once the
    row exists, or what names it would point at nothing."""

    key_field: ClassVar[str]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return [self.key_field] if obj is not None else []


@admin.register(SubscriptionCategory)
class SubscriptionCategoryAdmin(KeyedAdmin):
    key_field = "code"
    list_display = ["name", "code", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "code"]


class CustomAttributeForm(forms.ModelForm):
    class Meta:
        model = CustomAttribute
        fields = ["key", "label", "type", "choices"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        choices = cleaned.get("choices")
        if "choices" not in cleaned:
            return cleaned
        if cleaned.get("type") == CustomAttribute.Type.CHOICE:
            if not (isinstance(choices, list) and choices
                    and all(isinstance(choice, str) and choice.strip() for choice in choices)):
                self.add_error("choices", 'Give the allowed values as a list of texts, '
                                          'for example ["gold", "silver"].')
            elif len(set(choices)) != len(choices):
                self.add_error("choices", "Each allowed value once, please.")
        elif choices:
            self.add_error("choices", 'Only "one of a list" has choices; leave this empty.')
        else:
            cleaned["choices"] = []
        return cleaned


@admin.register(CustomAttribute)
class CustomAttributeAdmin(KeyedAdmin):
    form = CustomAttributeForm
    key_field = "key"
    list_display = ["key", "label", "type"]
    list_filter = ["type"]
    search_fields = ["key", "label"]


# --- suppressions ---------------------------------------------------------------------------

class SuppressionAddForm(forms.ModelForm):
    channel = forms.ChoiceField(choices=[(c.value, c.label) for c in SUPPRESSIBLE_CHANNELS])

    class Meta:
        model = Suppression
        fields = ["channel", "address", "reason", "note"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("channel") and cleaned.get("address"):
            try:
                cleaned["address"] = address_normalize(channel=cleaned["channel"],
                                                       address=cleaned["address"])
            except ValidationError as error:
                # The normalizers name the kind of address; this form calls it "address".
                form_errors_add(self, error, rename={"email": "address", "phone": "address"})
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionAddForm
    list_display = ["address", "channel", "reason", "source", "created_at", "created_by"]
    list_filter = ["channel", "reason"]
    list_select_related = ["created_by"]
    search_fields = ["address"]
    search_help_text = "Exact email address or phone number."
    show_full_result_count = False
    ordering = ["-id"]
    actions = ["lift_suppressions"]

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> list[str]:
        if obj is None:
            return ["channel", "address", "reason", "note"]
        return ["channel", "address", "reason", "source", "note", "created_at", "created_by"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Suppression],
                           search_term: str) -> tuple[QuerySet[Suppression], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(address__in={term.lower(), phone_or_none(term) or term}), False

    # A suppression is added once and never edited; lifting it needs a reason, so it is an
    # action with its own page instead of the delete button.
    def has_change_permission(self, request: HttpRequest,
                              obj: Suppression | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest,
                              obj: Suppression | None = None) -> bool:
        return False

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    def save_model(self, request: HttpRequest, obj: Suppression, form: SuppressionAddForm,
                   change: bool) -> None:
        suppression = suppression_add(
            channel=obj.channel, address=obj.address, reason=obj.reason, note=obj.note,
            source="admin", by=request.user)
        saved_adopt(obj, suppression)

    @admin.action(description="Lift suppression of the selected addresses",
                  permissions=["lift"])
    def lift_suppressions(self, request: HttpRequest,
                          queryset: QuerySet[Suppression]) -> TemplateResponse | None:
        form = ReasonForm(request.POST if "lift" in request.POST else None)
        form.fields["reason"].help_text = (
            "Why these addresses may be contacted again. Kept in the audit log.")
        if form.is_bound and form.is_valid():
            try:
                with transaction.atomic():
                    for suppression in queryset:
                        suppression_remove(suppression=suppression, by=request.user,
                                           reason=form.cleaned_data["reason"])
            except ValidationError as error:
                form_errors_add(form, error)
            else:
                self.message_user(request, f"Lifted {len(queryset)} suppression(s).",
                                  messages.SUCCESS)
                return None
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/suppression/lift.html", {
            **self.admin_site.each_context(request), "opts": self.opts,
            "title": "Lift suppressions", "form": form, "adminform": admin_form_wrap(form),
            "suppressions": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })


# --- audit log ------------------------------------------------------------------------------

@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor", "member", "detail"]
    list_filter = ["action"]
    list_select_related = ["actor"]
    search_fields = ["member_id"]
    search_help_text = "Member id (the number in the address of the member's page)."
    show_full_result_count = False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[AuditEntry],
                           search_term: str) -> tuple[QuerySet[AuditEntry], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return (queryset.filter(member_id=int(term)) if term.isdigit() else queryset.none(),
                False)

    @admin.display(description="member", ordering="member_id")
    def member(self, entry: AuditEntry) -> str:
        if entry.member_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>',
                           reverse("admin:members_member_change", args=[entry.member_id]),
                           entry.member_id)

