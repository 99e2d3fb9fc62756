from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse

from campaigns import admin_views
from campaigns.models import Campaign, TargetGroup
from campaigns.selectors import target_group_size
from members.models import Channel

RULES_HELP = (
    "Build the rules above; they are kept as the JSON tree below (docs/target-groups.md), "
    'which can also be edited by hand: {"and": [...]}, {"or": [...]}, {"not": ...} around '
    'conditions such as {"field": "orders_count", "op": "range", "value": [2, null], '
    '"days": 90}. No rules selects every member.'
)


class TargetGroupForm(forms.ModelForm):
    class Meta:
        model = TargetGroup
        fields = ["name", "description", "rules"]
        help_texts = {"rules": RULES_HELP}
        # The rule builder (campaigns/static/campaigns/rule_builder.js) mounts on this textarea
        # and writes the tree into it; without JavaScript it is the editor itself.
        widgets = {"rules": forms.Textarea(attrs={
            "rows": 8, "cols": 80, "spellcheck": "false", "data-rule-builder": ""})}

    def clean_rules(self) -> Any:
        # An emptied textarea (or `null`) means no rules; the column itself is never NULL.
        rules = self.cleaned_data["rules"]
        return {} if rules is None else rules


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "starts_on", "ends_on", "budget", "currency", "created_at"]
    search_fields = ["name"]
    date_hierarchy = "starts_on"
    readonly_fields = ["created_at"]


@admin.register(TargetGroup)
class TargetGroupAdmin(admin.ModelAdmin):
    form = TargetGroupForm
    list_display = ["name", "description", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["audience_size", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "rules"]}),
        ("Audience", {"fields": ["audience_size", "created_at", "updated_at"]}),
    ]

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("fields/", view(self.rule_fields_view), name=self._url_name("rule_fields")),
            path("preview/", view(self.rules_preview_view),
                 name=self._url_name("rules_preview")),
            *super().get_urls(),
        ]

    def _url_name(self, suffix: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def rule_fields_view(self, request: HttpRequest) -> JsonResponse:
        return admin_views.rule_fields(request, model_admin=self)

    def rules_preview_view(self, request: HttpRequest) -> JsonResponse:
        return admin_views.rules_preview(request, model_admin=self)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: dict[str, Any] | None = None,
                        ) -> HttpResponse:
        context = {**(extra_context or {}), "rule_builder": self._rule_builder_config(object_id)}
        return super().changeform_view(request, object_id, form_url, context)

    def _rule_builder_config(self, object_id: str | None) -> dict[str, Any]:
        """What the builder's script needs, rendered into the page as JSON."""
        site = self.admin_site.name
        try:
            member_url = reverse("admin:members_member_change", args=["__id__"],
                                 current_app=site)
        except NoReverseMatch:  # an admin site without members: the sample is not linked
            member_url = None
        return {
            "fieldsUrl": reverse(f"admin:{self._url_name('rule_fields')}", current_app=site),
            "previewUrl": reverse(f"admin:{self._url_name('rules_preview')}", current_app=site),
            # The group being edited: a reference back to it is refused as a cycle.
            "targetGroupId": int(object_id) if object_id and object_id.isdigit() else None,
            "memberUrl": member_url,
            "channels": [{"value": value, "label": str(label)} for value, label in
                         Channel.choices],
        }

    @admin.display(description="members matching now")
    def audience_size(self, target_group: TargetGroup) -> str:
        if target_group.pk is None:
            return "Not saved yet: “Preview audience” above counts the rules as they stand."
        try:
            size = target_group_size(target_group=target_group)
        except ValidationError as error:
            # Reached when the form re-renders rejected rules, or for rules stored another way.
            return "The rules are invalid: " + "; ".join(
                f"{path}: {message}" for path, messages in error.message_dict.items()
                for message in messages
            )
        return f"{size:,}"
