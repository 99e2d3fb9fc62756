from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from members.models import Consent, Member


class ConsentInline(admin.TabularInline):
    """Consents are shown, not edited: a consent changes only through its service, which keeps
    the ledger and the opt-out guarantee; the admin has no such door yet."""

    model = Consent
    extra = 0
    fields = ["channel", "purpose", "state", "source", "recorded_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["external_id", "name", "email", "phone", "language", "created_at"]
    # Exact matches for identifiers: a substring search over a million members is a full scan
    # per keystroke, and nobody searches for half a phone number.
    search_fields = ["=external_id", "=email", "=phone", "first_name", "last_name"]
    search_help_text = "Exact external id, email or phone, or part of the first or last name."
    # Counting a million rows on every page load is the slowest part of the changelist.
    show_full_result_count = False
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["external_id", "first_name", "last_name"]}),
        ("Contact", {"fields": ["email", "phone", "language", "timezone"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ConsentInline]

    @admin.display(description="name", ordering="last_name")
    def name(self, member: Member) -> str:
        return f"{member.first_name} {member.last_name}".strip()


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["member", "channel", "purpose", "state", "source", "recorded_at"]
    list_filter = ["channel", "purpose", "state", "source"]
    list_select_related = ["member"]
    search_fields = ["=member__external_id", "=member__email", "=member__phone"]
    search_help_text = "Exact external id, email or phone of the member."
    show_full_result_count = False
    raw_id_fields = ["member"]

    # Read-only for the same reason as the inline.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Consent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Consent | None = None) -> bool:
        return False
