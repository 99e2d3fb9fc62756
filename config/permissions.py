"""The staff API's permission: an active staff user holding the model permission the request
needs (config.roles gives them by role). Every staff endpoint gets it by default
(REST_FRAMEWORK's DEFAULT_PERMISSION_CLASSES).

What a request needs:
- a view with a queryset (a ViewSet, a generic view): the model's `view` permission for GET,
  HEAD and OPTIONS, `add` for POST, `change` for PUT and PATCH, `delete` for DELETE;
- an extra action of a ViewSet (`@action`): `view` when it reads, `change` when it writes
  (schedule, test-send, rotate-secret act on an existing object); `staff_action_permissions`
  on the view overrides it per action, as verbs of the view's model ("view") or full
  permissions ("members.view_member");
- a view without a queryset (an APIView): `staff_permissions`, method -> full permissions.

A staff view that says none of this is refused, whoever calls it: an endpoint added without
its permission fails closed instead of opening to every staff user.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# ViewSet actions that map to the methods' own meaning (DjangoModelPermissions.perms_map).
STANDARD_ACTIONS = {"list", "retrieve", "create", "update", "partial_update", "destroy",
                    "metadata", None}


def _model_perm(model: type[Model], verb: str) -> str:
    return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"


class StaffModelPermissions(DjangoModelPermissions):
    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        perms = self.view_permissions(request, view)
        return perms is not None and user.has_perms(perms)

    def view_permissions(self, request: Request, view: Any) -> list[str] | None:
        """The permissions the request needs, or None when the view names none."""
        method = request.method or ""
        explicit = getattr(view, "staff_permissions", None)
        if explicit is not None:
            if method in ("HEAD", "OPTIONS") and method not in explicit:
                method = "GET"
            perms = explicit.get(method)
            return list(perms) if perms is not None else None
        model = self._model(view)
        if model is None:
            return None
        action = getattr(view, "action", None)
        overrides = getattr(view, "staff_action_permissions", {})
        if action in overrides:
            return [perm if "." in perm else _model_perm(model, perm)
                    for perm in overrides[action]]
        if action not in STANDARD_ACTIONS:
            return [_model_perm(model, "view" if method in SAFE_METHODS else "change")]
        if method not in self.perms_map:
            return None
        return self.get_required_permissions(method, model)

    def _model(self, view: Any) -> type[Model] | None:
        # Imported here: rest_framework.views reads this class while it is being imported.
        from rest_framework.generics import GenericAPIView

        queryset = getattr(view, "queryset", None)
        if queryset is None:
            get_queryset = getattr(type(view), "get_queryset", None)
            # GenericAPIView's own asserts a queryset: a view without one names none.
            if get_queryset is None or get_queryset is GenericAPIView.get_queryset:
                return None
            queryset = view.get_queryset()
        return queryset.model
