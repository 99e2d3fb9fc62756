"""Frequency caps and quiet hours, applied to every mailing."""
from __future__ import annotations

from django.contrib import admin

from communications.models import (
    FrequencyCap,
    QuietHours,
)


@admin.register(FrequencyCap)
class FrequencyCapAdmin(admin.ModelAdmin):
    """Caps across all mailings, checked when a batch is claimed (services.compliance)."""

    list_display = ["__str__", "channel", "max_messages", "period_length", "period_unit",
                    "is_active"]
    list_filter = ["channel", "is_active"]
    list_editable = ["is_active"]


@admin.register(QuietHours)
class QuietHoursAdmin(admin.ModelAdmin):
    """Per channel, in each member's time zone (services.compliance)."""

    list_display = ["channel", "starts_at", "ends_at", "is_active"]
    list_editable = ["is_active"]


