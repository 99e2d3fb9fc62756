from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from campaigns.models import Campaign, TargetGroup
from campaigns.selectors import target_group_size

RULES_HELP = (
    'A rule tree: {"and": [...]}, {"or": [...]}, {"not": ...} around conditions such as '
    '{"field": "orders_count", "op": "range", "value": [2, null], "days": 90}; empty is '
    "everyone. Fields: see docs/target-groups.md."
)


class TargetGroupForm(forms.ModelForm):
    class Meta:
        model = TargetGroup
        fields = ["name", "description", "rules"]
        help_texts = {"rules": RULES_HELP}


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

    @admin.display(description="members matching now")
    def audience_size(self, target_group: TargetGroup) -> str:
        if target_group.pk is None:
            return "Save the target group to see how many members it selects."
        try:
            size = target_group_size(target_group=target_group)
        except ValidationError as error:
            # Reached when the form re-renders rejected rules, or for rules stored another way.
            return "The rules are invalid: " + "; ".join(
                f"{path}: {message}" for path, messages in error.message_dict.items()
                for message in messages
            )
        return f"{size:,}"
