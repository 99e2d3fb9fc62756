"""Staff users in the admin: only a superuser makes superusers or grants permissions one by one.

The administrator role may change users (config.roles) to give them a role, i.e. a group. With
Django's own user screen that would also let it tick "superuser status" or hand out any single
permission, and so any right at all, its own included: for a non-superuser those fields are
shown, not editable.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

SUPERUSER_ONLY_FIELDS = ("is_superuser", "user_permissions")


class StaffUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return readonly
        return (*readonly, *SUPERUSER_ONLY_FIELDS)


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
