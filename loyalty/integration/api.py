"""The integration API: what the loyalty engine, the shop and the POS call, authenticated by
an API key with the operation's scope (or a staff session).

Every write takes an optional `Idempotency-Key` header (loyalty.integration.idempotency) and
records its event in the same transaction. Errors carry a stable `code`: unknown_member,
unknown_event_type, invalid_payload (with `path`), invalid_events (a batch, with `errors` by
index), order_refunded, voucher_redeemed, voucher_expired, voucher_exists, idempotency_key_reused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import service_call
from loyalty.integration import services
from loyalty.integration.authentication import ApiKeyAuthentication, HasScope
from loyalty.integration.events import EventsRefused, events_ingest
from loyalty.integration.idempotency import HEADER, idempotent
from loyalty.integration.serializers import (
    EventBatchInSerializer,
    EventInSerializer,
    OrderInSerializer,
    OrderOutSerializer,
    OrderRefundInSerializer,
    VoucherInSerializer,
    VoucherOutSerializer,
    VoucherRedeemSerializer,
)
from members.serializers import MemberSerializer

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER, location=OpenApiParameter.HEADER, required=False,
    description="Any unique string: a retry with the same key and body gets the first answer; "
                "the same key with another body is refused (409 idempotency_key_reused).")
REFUSAL_STATUS = {"not_found": status.HTTP_404_NOT_FOUND,
                  "unknown_member": status.HTTP_400_BAD_REQUEST}


def _refusal(refused: services.Refused) -> Response:
    return Response({"code": refused.code, "detail": refused.message},
                    status=REFUSAL_STATUS.get(refused.code, status.HTTP_409_CONFLICT))


class IntegrationView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]

    def write(self, request: Request, change: Callable[[], Response]) -> Response:
        def guarded() -> Response:
            try:
                return change()
            except services.Refused as refused:
                return _refusal(refused)
        return idempotent(request, guarded)


class MemberUpsertView(IntegrationView):
    permission_classes = [HasScope("members:write")]

    @extend_schema(request=dict[str, Any], parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: MemberSerializer, 201: MemberSerializer})
    def post(self, request: Request) -> Response:
        """Create or update the member with `external_id` (the staff upsert's fields): 201
        when created (MEMBER_REGISTERED), 200 when updated (PROFILE_UPDATED)."""
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        data = dict(request.data)
        external_id = data.pop("external_id", "")
        if not isinstance(external_id, str):
            raise serializers.ValidationError({"external_id": ["must be text"]})

        def change() -> Response:
            member, created = service_call(
                lambda: services.member_sync(external_id=external_id, data=data))
            return Response(MemberSerializer(member).data,
                            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        return self.write(request, change)


class OrderRecordView(IntegrationView):
    permission_classes = [HasScope("orders:write")]

    @extend_schema(request=OrderInSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: OrderOutSerializer, 201: OrderOutSerializer})
    def post(self, request: Request) -> Response:
        """Record an order with its lines (ORDER_PLACED): 201; an order already recorded under
        the same `external_id` is answered 200 and not recorded again."""
        given = OrderInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data

        def change() -> Response:
            order, created = service_call(lambda: services.order_record(
                external_id=data["external_id"], member_external_id=data["member"],
                placed_at=data["placed_at"], total=data["total"], currency=data["currency"],
                discount=data["discount"], points_earned=data["points_earned"],
                lines=[services.LineDraft(**line) for line in data["lines"]]))
            return Response(OrderOutSerializer(order).data,
                            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        return self.write(request, change)


class OrderRefundView(IntegrationView):
    permission_classes = [HasScope("orders:write")]

    @extend_schema(request=OrderRefundInSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: OrderOutSerializer})
    def post(self, request: Request, external_id: str) -> Response:
        """Refund an order in part or in full (ORDER_REFUNDED); its credit to a campaign is
        lowered, or reversed once nothing is left. 404 not_found; 409 order_refunded; 400 an
        amount past what is left. Send an Idempotency-Key: a retried refund is not refunded
        twice."""
        given = OrderRefundInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data

        def change() -> Response:
            order = service_call(lambda: services.order_refund(
                external_id=external_id, amount=data.get("amount"),
                refunded_at=data.get("refunded_at")))
            return Response(OrderOutSerializer(order).data)
        return self.write(request, change)


class VoucherIssueView(IntegrationView):
    permission_classes = [HasScope("vouchers:write")]

    @extend_schema(request=VoucherInSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: VoucherOutSerializer})
    def post(self, request: Request) -> Response:
        """Issue a voucher to a member (VOUCHER_ISSUED)."""
        given = VoucherInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data

        def change() -> Response:
            voucher = service_call(lambda: services.voucher_issue(
                code=data["code"], member_external_id=data["member"], kind=data["kind"],
                value=data["value"], expires_at=data["expires_at"]))
            return Response(VoucherOutSerializer(voucher).data, status=status.HTTP_201_CREATED)
        return self.write(request, change)


class VoucherRedeemView(IntegrationView):
    permission_classes = [HasScope("vouchers:write")]

    @extend_schema(request=VoucherRedeemSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: VoucherOutSerializer})
    def post(self, request: Request, code: str) -> Response:
        """Redeem a voucher (VOUCHER_REDEEMED); a second redemption is 409 voucher_redeemed."""
        given = VoucherRedeemSerializer(data=request.data)
        given.is_valid(raise_exception=True)

        def change() -> Response:
            voucher = services.voucher_redeem(
                code=code, order_external_id=given.validated_data["order"])
            return Response(VoucherOutSerializer(voucher).data)
        return self.write(request, change)


def _ingest(request: Request, raw_events: list[Any], *, single: bool) -> Response:
    def change() -> Response:
        try:
            events = events_ingest(raw_events=raw_events)
        except EventsRefused as refused:
            if single:
                only = next(iter(refused.errors.values()))
                return Response(only.as_dict(), status=status.HTTP_400_BAD_REQUEST)
            return Response({
                "code": "invalid_events", "detail": "no event of the batch was recorded",
                "errors": [{"index": index, **error.as_dict()}
                           for index, error in sorted(refused.errors.items())]},
                status=status.HTTP_400_BAD_REQUEST)
        ids = [str(event.id) for event in events]
        return Response({"id": ids[0]} if single else {"ids": ids},
                        status=status.HTTP_201_CREATED)
    return idempotent(request, change)


class EventPostView(IntegrationView):
    permission_classes = [HasScope("events:write")]

    @extend_schema(request=EventInSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: dict[str, str]})
    def post(self, request: Request) -> Response:
        """Record one event; 400 unknown_event_type, invalid_payload (with the schema's
        `path`) or unknown_member records nothing."""
        return _ingest(request, [request.data], single=True)


class EventBatchView(IntegrationView):
    permission_classes = [HasScope("events:write")]

    @extend_schema(request=EventBatchInSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: dict[str, list[str]]})
    def post(self, request: Request) -> Response:
        """Record up to 1,000 events in one write, or none: 400 invalid_events names each bad
        event by its index."""
        raw_events = request.data.get("events") if isinstance(request.data, dict) else None
        if not isinstance(raw_events, list):
            raise serializers.ValidationError({"events": ["a list of events"]})
        return _ingest(request, raw_events, single=False)

