"""Who a request acts for on the member side: the app's bearer token or the account session.

Staff and members never mix: a member's credential gives a `MemberPrincipal`, which is
authenticated but not staff, so every staff endpoint (config.permissions, the default) refuses
it, and member endpoints (`IsMember`) refuse staff users, who have no member of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, permissions
from rest_framework.request import Request

from config.principals import Principal
from members.models import Member, MemberToken
from members.services.sign_in import member_token_member

SESSION_KEY = "engage_member_id"


@dataclass(frozen=True)
class MemberPrincipal(Principal):
    """The member a request acts for, where Django and DRF expect a user."""

    member: Member
    token: MemberToken | None = None

    @property
    def pk(self) -> int:
        return self.member.pk


class MemberTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mt_...`, a token the app got from sign-in."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[MemberPrincipal, MemberToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise authentication.exceptions.AuthenticationFailed(
                "the Authorization header must be: Bearer <token>")
        found = member_token_member(header[1])
        if found is None:
            raise authentication.exceptions.AuthenticationFailed(
                "this token is not valid or was revoked; sign in again")
        member, token = found
        return MemberPrincipal(member, token), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class MemberSessionAuthentication(authentication.SessionAuthentication):
    """The account pages' session, for their few JSON calls (CSRF enforced as for staff)."""

    def authenticate(self, request: Request) -> tuple[MemberPrincipal, None] | None:
        member = session_member(request._request)
        if member is None:
            return None
        self.enforce_csrf(request)
        return MemberPrincipal(member), None


def session_member(request: HttpRequest) -> Member | None:
    member_id = request.session.get(SESSION_KEY)
    if member_id is None:
        return None
    return Member.objects.filter(pk=member_id, status=Member.Status.ACTIVE).first()


class IsMember(permissions.BasePermission):
    message = "sign in as a member: Authorization: Bearer <token> from /api/v1/me/sign-in/"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, MemberPrincipal)


def request_member(request: Request) -> Member:
    """The member of a request that passed IsMember."""
    return request.user.member


class MemberTokenScheme(OpenApiAuthenticationExtension):
    target_class = MemberTokenAuthentication
    name = "memberToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer",
                "description": "A member's app token from POST /api/v1/me/sign-in/verify/."}


class MemberSessionScheme(OpenApiAuthenticationExtension):
    target_class = MemberSessionAuthentication
    name = "memberSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
