"""Who an integration request acts for: an API key (`Authorization: Api-Key ek_...`), or a
staff session (a marketer trying the API from the browser).

A key gives an `ApiKeyPrincipal`, authenticated but not staff, so every staff endpoint
(config.permissions, the default) refuses it; integration endpoints check its scopes with
`HasScope`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, permissions
from rest_framework.request import Request

from config.principals import Principal
from loyalty.integration.keys import api_key_valid
from loyalty.integration.models import ApiKey


@dataclass(frozen=True)
class ApiKeyPrincipal(Principal):
    """The API key a request acts for, where Django and DRF expect a user."""

    api_key: ApiKey

    @property
    def pk(self) -> int:
        return self.api_key.pk


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key ek_...`, a key created in the admin."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise authentication.exceptions.AuthenticationFailed(
                "the Authorization header must be: Api-Key <key>")
        api_key = api_key_valid(header[1])
        if api_key is None:
            raise authentication.exceptions.AuthenticationFailed(
                "this API key is not valid, was revoked or has expired")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


# What a staff session (someone trying the API from the browser) needs for each scope: the
# model permissions its role gives (config.roles), as for the same change in the admin.
SCOPE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ApiKey.Scope.MEMBERS_WRITE: ("members.add_member", "members.change_member"),
    ApiKey.Scope.ORDERS_WRITE: ("loyalty.add_order",),
    ApiKey.Scope.VOUCHERS_WRITE: ("loyalty.add_voucher", "loyalty.change_voucher"),
    ApiKey.Scope.EVENTS_WRITE: ("loyalty.add_event",),
    ApiKey.Scope.EVENTS_READ: ("loyalty.view_event",),
}


def HasScope(scope: str) -> type[permissions.BasePermission]:  # noqa: N802  (reads as a class)
    """A permission: an API key holding `scope`, or a staff user whose role holds the model
    permissions the scope stands for (SCOPE_PERMISSIONS)."""
    needed = SCOPE_PERMISSIONS[scope]

    class _HasScope(permissions.BasePermission):
        message = (f"this API key lacks the scope {scope} (a staff session needs "
                   f"{', '.join(needed)})")

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            if isinstance(user, ApiKeyPrincipal):
                return scope in user.api_key.scopes
            return bool(user and user.is_authenticated and user.is_staff
                        and user.has_perms(needed))

    _HasScope.__name__ = f"HasScope({scope})"
    return _HasScope


def idempotency_owner(request: Request) -> str:
    """Whose idempotency keys a request's key is compared with."""
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return f"key:{user.api_key.pk}"
    return f"user:{user.pk}"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Api-Key <key>`, a key created in the admin (Loyalty → API "
                               "keys), with the scope the operation names."}
