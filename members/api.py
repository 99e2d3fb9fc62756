"""Staff API for members, their consents, privacy requests and the suppression list.

Views stay thin: each operation hands plain values to one service, and a Django
ValidationError from it (a dict naming the fields) becomes a 400 with the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import service_call
from members import selectors
from members.filters import MemberFilter, SuppressionFilter
from members.models import Member, Suppression
from members.serializers import (
    ConsentEventSerializer,
    ConsentRecordSerializer,
    ConsentSerializer,
    MemberChangeSerializer,
    MemberSerializer,
    MemberUpsertSerializer,
    ReasonSerializer,
    SuppressionCreateSerializer,
    SuppressionSerializer,
)
from members.services import (
    consent_record,
    member_data_export,
    member_erase,
    member_upsert,
    suppression_add,
    suppression_remove,
)


def _body(request: Request) -> dict[str, Any]:
    data = request.data
    if hasattr(data, "dict"):  # a form-encoded body arrives as a QueryDict
        data = data.dict()
    if not isinstance(data, Mapping):
        raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
    return dict(data)


class ListFiltersOnly:
    """Query parameters filter lists only: on a single object they mean something else (the
    `reason` of a DELETE is why, not a filter on the suppression's reason)."""

    action: str | None

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        return super().filter_queryset(queryset) if self.action == "list" else queryset


class MemberViewSet(ListFiltersOnly, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                    viewsets.GenericViewSet):
    """Members of the program: profiles, consents and privacy requests."""

    serializer_class = MemberSerializer
    filterset_class = MemberFilter
    queryset = Member.objects.all()
    # An upsert may create the member (config.permissions: other actions read or change one).
    staff_action_permissions = {"upsert": ["add", "change"]}
    # Digits only, so that paths such as members/import/ beside this router never read as ids.
    lookup_value_regex = r"\d+"

    @extend_schema(request=MemberUpsertSerializer,
                   responses={200: MemberSerializer, 201: MemberSerializer})
    @action(detail=False, methods=["post"])
    def upsert(self, request: Request) -> Response:
        """Create or update the member with `external_id`: 201 when created, 200 when updated.

        Fields left out keep their value; custom attributes merge into the stored ones.
        """
        data = _body(request)
        external_id = data.pop("external_id", "")
        if not isinstance(external_id, str):
            raise serializers.ValidationError({"external_id": ["must be text"]})
        member, created = service_call(lambda: member_upsert(external_id=external_id, data=data))
        return Response(self.get_serializer(member).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=MemberChangeSerializer, responses=MemberSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change some profile fields of the member."""
        member = self.get_object()
        data = _body(request)
        if data.pop("external_id", member.external_id) != member.external_id:
            raise serializers.ValidationError(
                {"external_id": ["cannot be changed; it is how the loyalty engine finds the "
                                 "member"]})
        member, _ = service_call(
            lambda: member_upsert(external_id=member.external_id, data=data))
        return Response(self.get_serializer(member).data)

    @extend_schema(methods=["get"], responses=ConsentSerializer(many=True),
                   description="The member's current consents, per channel, purpose and "
                               "category.")
    @extend_schema(methods=["post"], request=ConsentRecordSerializer,
                   responses={201: ConsentEventSerializer},
                   description="Record a grant or withdrawal; the current state follows it at "
                               "once (a withdrawal excludes the member from the next mailing).")
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def consents(self, request: Request, pk: str | None = None) -> Response:
        member = self.get_object()
        if request.method == "GET":
            current = member.consents.select_related("category").order_by(
                "channel", "purpose", "category__code")
            return Response(ConsentSerializer(current, many=True).data)
        payload = ConsentRecordSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        event = service_call(lambda: consent_record(
            member=member, actor=request.user, **payload.validated_data))
        return Response(ConsentEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ConsentEventSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="consent-history", pagination_class=None)
    def consent_history(self, request: Request, pk: str | None = None) -> Response:
        """Every grant and withdrawal of the member, newest first, with its evidence."""
        events = selectors.consent_history(member=self.get_object())
        return Response(ConsentEventSerializer(events, many=True).data)

    @extend_schema(responses={200: OpenApiResponse(
        OpenApiTypes.OBJECT, description="Profile, consents, messages and orders.")})
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> Response:
        """Everything held about the member (a privacy access request); recorded in the audit
        log."""
        data = service_call(lambda: member_data_export(member=self.get_object(),
                                                       by=request.user))
        return Response(data)

    @extend_schema(request=ReasonSerializer, responses=MemberSerializer)
    @action(detail=True, methods=["post"])
    def erase(self, request: Request, pk: str | None = None) -> Response:
        """Anonymize the member and their messages (a privacy erasure request).

        Aggregate counts and the proof of consent withdrawal are kept; the request is recorded
        in the audit log.
        """
        member = self.get_object()
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        member = service_call(lambda: member_erase(
            member=member, by=request.user, reason=payload.validated_data["reason"]))
        return Response(self.get_serializer(member).data)


class SuppressionViewSet(ListFiltersOnly, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Addresses nobody may contact, whoever holds them."""

    serializer_class = SuppressionSerializer
    filterset_class = SuppressionFilter
    queryset = Suppression.objects.select_related("created_by")

    @extend_schema(request=SuppressionCreateSerializer, responses={201: SuppressionSerializer})
    def create(self, request: Request) -> Response:
        """Suppress an address; an address already suppressed keeps its first record."""
        payload = SuppressionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        suppression = service_call(
            lambda: suppression_add(by=request.user, **payload.validated_data),
            # The normalizers name the kind of address; the request calls it "address".
            rename={"email": "address", "phone": "address"})
        return Response(self.get_serializer(suppression).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter(
            "reason", str, description='Why the address may be contacted again (or send '
                                       '{"reason": "..."} in the body).')],
        responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Lift the suppression; the reason is kept in the audit log."""
        suppression = self.get_object()
        reason = request.query_params.get("reason") or ""
        if not reason and isinstance(request.data, Mapping):
            reason = request.data.get("reason") or ""
        if not isinstance(reason, str):
            raise serializers.ValidationError({"reason": ["must be text"]})
        service_call(lambda: suppression_remove(suppression=suppression, by=request.user,
                                                reason=reason))
        return Response(status=status.HTTP_204_NO_CONTENT)
