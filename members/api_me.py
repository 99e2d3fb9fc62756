"""The member's own API for the mobile app, under /api/v1/me/: sign-in, profile, app tokens.

Everything here acts for the signed-in member only: no endpoint takes a member id, and objects
are looked up within the member's own rows, so another member's id is a 404.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import FlatRepresentation
from members import hooks
from members.authentication import (
    IsMember,
    MemberSessionAuthentication,
    MemberTokenAuthentication,
    request_member,
)
from members.models import Member, MemberToken
from members.services.profiles import member_upsert
from members.services.sign_in import (
    SignInRefused,
    member_token_issue,
    member_token_revoke,
    sign_in_code_request,
    sign_in_code_verify,
)

# The profile fields a member changes themselves; the address they sign in with is not one.
MEMBER_EDITABLE_FIELDS = ("first_name", "last_name", "language", "timezone", "city")


def client_ip(request: Request) -> str | None:
    """The caller's address as the proxy in front of Engage saw it (REMOTE_ADDR behind a
    proxy that sets it, as gunicorn does with --forwarded-allow-ips)."""
    return request.META.get("REMOTE_ADDR") or None


def refusal_response(refused: SignInRefused) -> Response:
    too_many = refused.code in ("too_many_codes", "too_many_attempts")
    headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
    return Response({"code": refused.code, "detail": refused.message},
                    status=status.HTTP_429_TOO_MANY_REQUESTS if too_many
                    else status.HTTP_400_BAD_REQUEST, headers=headers)


ErrorSerializer = inline_serializer("MemberError", {
    "code": serializers.CharField(help_text="Stable: invalid_address, too_many_codes, "
                                            "too_many_attempts, invalid_code, expired_code."),
    "detail": serializers.CharField(),
})


class MemberApiView(APIView):
    authentication_classes = [MemberTokenAuthentication, MemberSessionAuthentication]
    permission_classes = [IsMember]
    # JSON only: the app and the account pages' scripts are the callers, and choosing between
    # renderers (the browsable API's HTML) cost every call a parse of its Accept header.
    renderer_classes = [JSONRenderer]


class SignInRequestSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=254,
                                    help_text="The member's email address or phone number.")


class SignInVerifySerializer(SignInRequestSerializer):
    code = serializers.CharField(max_length=16, help_text="The code the member received.")
    device_name = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                        help_text="How the token is listed, e.g. 'Ann's Pixel'.")


class ProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = Member
        fields = ["id", "first_name", "last_name", "email", "phone", "language", "timezone",
                  "city", "birth_date"]
        read_only_fields = ["id", "email", "phone", "birth_date"]


# The home call's profile, represented field by field (config.api.FlatRepresentation).
_PROFILE_REPRESENTATION = FlatRepresentation(ProfileSerializer())


class MemberTokenSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField(help_text="The token of this request.")

    class Meta:
        model = MemberToken
        fields = ["id", "name", "created_at", "last_used_at", "current"]

    def get_current(self, token: MemberToken) -> bool:
        current = self.context.get("current")
        return current is not None and token.pk == current.pk


class SignInRequestView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=SignInRequestSerializer,
        responses={202: inline_serializer("SignInRequested", {
            "channel": serializers.CharField(), "expires_in": serializers.IntegerField(),
            "detail": serializers.CharField()}),
            400: ErrorSerializer, 429: ErrorSerializer},
        description="Send a one-time code to the address. The answer is the same whether or "
                    "not a member has the address.")
    def post(self, request: Request) -> Response:
        body = SignInRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            row = sign_in_code_request(raw_address=body.validated_data["address"],
                                       ip_address=client_ip(request))
        except SignInRefused as refused:
            return refusal_response(refused)
        return Response({
            "channel": row.channel,
            "expires_in": int((row.expires_at - row.created_at).total_seconds()),
            "detail": "If a member has this address, a code is on its way.",
        }, status=status.HTTP_202_ACCEPTED)


class SignInVerifyView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=SignInVerifySerializer,
        responses={201: inline_serializer("SignedIn", {
            "token": serializers.CharField(help_text="Send as Authorization: Bearer <token>; "
                                                     "shown only now."),
            "token_id": serializers.IntegerField(), "member": ProfileSerializer()}),
            400: ErrorSerializer, 429: ErrorSerializer},
        description="Trade the code for an app token for this device.")
    def post(self, request: Request) -> Response:
        body = SignInVerifySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            member = sign_in_code_verify(raw_address=data["address"], code=data["code"],
                                         ip_address=client_ip(request))
        except SignInRefused as refused:
            return refusal_response(refused)
        token, raw = member_token_issue(member=member, name=data.get("device_name", ""))
        return Response({"token": raw, "token_id": token.pk,
                         "member": ProfileSerializer(member).data},
                        status=status.HTTP_201_CREATED)


class ProfileView(MemberApiView):
    @extend_schema(responses=ProfileSerializer, description="The signed-in member's profile.")
    def get(self, request: Request) -> Response:
        return Response(ProfileSerializer(request_member(request)).data)

    @extend_schema(request=ProfileSerializer, responses={200: ProfileSerializer},
                   description="Change the member's name, language, time zone or city.")
    def patch(self, request: Request) -> Response:
        member = request_member(request)
        data: Any = request.data
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["send a JSON object"]})
        refused = sorted(set(data) - set(MEMBER_EDITABLE_FIELDS))
        if refused:
            raise serializers.ValidationError({key: ["cannot be changed here"]
                                               for key in refused})
        try:
            member, _ = member_upsert(external_id=member.external_id, data=dict(data))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return Response(ProfileSerializer(member).data)


class HomeView(MemberApiView):
    @extend_schema(responses=inline_serializer("MemberHome", {
        "profile": ProfileSerializer(),
        "offers": serializers.ListField(child=serializers.DictField(), required=False,
                                        help_text="The offers shown to the member now."),
        "unread_messages": serializers.IntegerField(required=False),
    }), description="What the app's home screen shows, in one call: the profile and what the "
                    "other parts of the program add (active offers, unread messages).")
    def get(self, request: Request) -> Response:
        member = request_member(request)
        home: dict[str, Any] = {"profile": _PROFILE_REPRESENTATION(member)}
        for handler in hooks.ACCOUNT_HOME:
            home.update(handler(member, "app"))
        return Response(home)


class TokenListView(MemberApiView):
    @extend_schema(responses=MemberTokenSerializer(many=True),
                   description="The member's live app tokens, one per signed-in device.")
    def get(self, request: Request) -> Response:
        tokens = MemberToken.objects.filter(member=request_member(request),
                                            revoked_at__isnull=True).order_by("-created_at")
        return Response(MemberTokenSerializer(
            tokens, many=True, context={"current": getattr(request.user, "token", None)}).data)


class TokenDetailView(MemberApiView):
    @extend_schema(responses={204: None, 404: None},
                   description="Sign a device out: revoke one of the member's tokens.")
    def delete(self, request: Request, token_id: int) -> Response:
        if not member_token_revoke(member=request_member(request), token_id=token_id):
            return Response({"code": "not_found", "detail": "no such token"},
                            status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SignOutView(MemberApiView):
    @extend_schema(request=None, responses={204: None},
                   description="Revoke the token this request was made with.")
    def post(self, request: Request) -> Response:
        token = getattr(request.user, "token", None)
        if token is not None:
            member_token_revoke(member=request_member(request), token_id=token.pk)
        else:
            request.session.flush()
        return Response(status=status.HTTP_204_NO_CONTENT)
