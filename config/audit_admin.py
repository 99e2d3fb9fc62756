"""The audit log's admin screen (Audit log → Log entries): read-only, filtered by model,
action, actor and date, each entry showing the before and after of the fields it changed.

Installed by config.audit.AuditlogConfig.ready(), after the admin's autodiscovery registered
the library's own screen, which this one replaces.
"""

from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin as LibraryLogEntryAdmin
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import capfirst

NO_USER = "none"


class AuditedModelFilter(admin.SimpleListFilter):
    """The logged models, from the registry: no scan of the log to find which occur."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        by_model = ContentType.objects.get_for_models(*auditlog.get_models())
        return sorted(((str(content_type.pk), capfirst(model._meta.verbose_name))
                       for model, content_type in by_model.items()), key=lambda item: item[1])

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(content_type_id=value) if value.isdigit() else queryset.none()


class ActorFilter(admin.SimpleListFilter):
    """Who made the change: staff users (the only people who change these models), or no
    user (a shell, a management command)."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        user_model = get_user_model()
        staff = user_model.objects.filter(is_staff=True).order_by(user_model.USERNAME_FIELD)
        return [*((str(user.pk), str(user)) for user in staff), (NO_USER, "No user")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if value == NO_USER:
            return queryset.filter(actor__isnull=True)
        return queryset.filter(actor_id=value) if value.isdigit() else queryset.none()


class AuditLogEntryAdmin(LibraryLogEntryAdmin):
    list_display = ["created", "resource_url", "action", "msg_short", "user_url", "remote_addr"]
    list_filter = [AuditedModelFilter, "action", ActorFilter, ("timestamp",
                                                             admin.DateFieldListFilter)]
    search_fields = ["object_repr", "actor_email", f"actor__{get_user_model().USERNAME_FIELD}"]
    readonly_fields = ["created", "user_url", "remote_addr", "resource_url", "action", "msg"]
    fieldsets = [
        (None, {"fields": ["created", "user_url", "remote_addr", "resource_url"]}),
        ("Changes", {"fields": ["action", "msg"]}),
    ]
    # Counting a long log on every page costs more than the number is worth.
    show_full_result_count = False


def audit_admin_install(site: admin.AdminSite = admin.site) -> None:
    if site.is_registered(LogEntry):
        site.unregister(LogEntry)
    site.register(LogEntry, AuditLogEntryAdmin)
