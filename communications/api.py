from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from communications import services
from communications.address_lists import AddressListError, address_list_read
from communications.models import Mailing
from communications.selectors import mailings_with_counts
from communications.selectors.calendar import messaging_calendar
from communications.selectors.costs import mailing_cost_estimate
from communications.selectors.reports import mailing_report
from communications.serializers import (
    AddressListReportSerializer,
    AddressListUploadSerializer,
    MailingCalendarQuerySerializer,
    MailingCostEstimateSerializer,
    MailingReportSerializer,
    MailingScheduleSerializer,
    MailingSerializer,
    MailingTestMessageSerializer,
    MailingTestSendSerializer,
    MailingWriteSerializer,
    MessagingCalendarSerializer,
    TriggerMailingSerializer,
    TriggerMailingWriteSerializer,
)
from communications.services.audiences import (
    address_report_summary,
    mailing_address_list_attach,
)
from communications.services.mailings import mailing_create, mailing_update
from communications.services.triggers import (
    trigger_activate,
    trigger_mailing_create,
    trigger_mailing_update,
)
from config.api import service_call


class MailingScheduledSerializer(MailingSerializer):
    """The schedule / start answer: the mailing, and a warning when it was scheduled over
    what is left of its campaign's budget (ENGAGE_BUDGET_BLOCK off; on, it is refused)."""

    budget_warning = serializers.SerializerMethodField(
        help_text="Null, or what the mailing would overspend of its campaign's budget.")

    class Meta(MailingSerializer.Meta):
        fields = [*MailingSerializer.Meta.fields, "budget_warning"]
        read_only_fields = fields

    def get_budget_warning(self, mailing: Mailing) -> str | None:
        return getattr(mailing, "budget_warning", "") or None


def _draft_write(payload: serializers.ModelSerializer,
                 write: Callable[[dict[str, Any]], Mailing]) -> tuple[Mailing, int]:
    """Validate a draft's fields and hand them to its service: (the mailing, 201 when it was
    created, else 200). A serializer may shape its fields for the service (`service_fields`)."""
    payload.is_valid(raise_exception=True)
    shape = getattr(payload, "service_fields", lambda: dict(payload.validated_data))
    mailing = service_call(lambda: write(shape()))
    return mailing, status.HTTP_200_OK if payload.instance else status.HTTP_201_CREATED


class MailingFilter(django_filters.FilterSet):
    class Meta:
        model = Mailing
        fields = ["state", "campaign", "target_group", "gateway"]


class MailingViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin,
                     viewsets.ReadOnlyModelViewSet):
    """Mailings with their message counters per status, and their state changes. Drafts,
    scheduled and recurring mailings can be changed; from `preparing` on they are fixed."""

    serializer_class = MailingSerializer
    filterset_class = MailingFilter
    # An uploaded address list becomes a static list (config.permissions: other actions read
    # or change the mailing).
    staff_action_permissions = {"address_list": ["change", "campaigns.add_staticlist"],
                                "approve": ["communications.approve_mailing"]}

    def get_queryset(self):
        # The variants (and the winner among them) in one query for the page.
        return mailings_with_counts().prefetch_related("variants")

    def get_serializer_class(self):
        if self.action in ("create", "update", "partial_update"):
            return MailingWriteSerializer
        return super().get_serializer_class()

    def _written(self, mailing: Mailing, code: int = status.HTTP_200_OK) -> Response:
        mailing = self.get_queryset().get(pk=mailing.pk)
        return Response(MailingSerializer(mailing, context=self.get_serializer_context()).data,
                        status=code)

    @extend_schema(request=MailingWriteSerializer, responses={201: MailingSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        return self._written(*_draft_write(
            MailingWriteSerializer(data=request.data),
            lambda fields: mailing_create(by=request.user, **fields)))

    @extend_schema(request=MailingWriteSerializer, responses=MailingSerializer)
    def update(self, request: Request, *args, **kwargs) -> Response:
        mailing = self.get_object()
        return self._written(*_draft_write(
            MailingWriteSerializer(mailing, data=request.data,
                                   partial=kwargs.get("partial", False)),
            lambda fields: mailing_update(mailing=mailing, **fields)))

    @extend_schema(request={"multipart/form-data": AddressListUploadSerializer},
                   responses=AddressListReportSerializer)
    @action(detail=True, methods=["post"], url_path="address-list")
    def address_list(self, request: Request, pk: str | None = None) -> Response:
        """Upload phones or emails: the members who have them become the mailing's audience.
        The answer counts the file's lines: valid, unknown (no member has them: not sent
        to), invalid (with examples) and repeated."""
        mailing = self.get_object()
        payload = AddressListUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        if mailing.template_id is None:
            raise serializers.ValidationError({"template": ["choose the template first: its "
                                                            "channel says which addresses the "
                                                            "list holds"]})
        try:
            report = address_list_read(file=payload.validated_data["file"],
                                       channel=mailing.template.channel,
                                       region=payload.validated_data.get("region", "").upper()
                                       or None)
        except AddressListError as error:
            raise serializers.ValidationError({"file": [str(error)]}) from error
        static_list = service_call(lambda: mailing_address_list_attach(mailing=mailing,
                                                                       report=report),
                                   rename={"address_list": "file"})
        return Response({"static_list": static_list.pk, "members": static_list.size,
                         **address_report_summary(report)})

    @extend_schema(responses=MailingCostEstimateSerializer)
    @action(detail=True, methods=["get"])
    def estimate(self, request: Request, pk: str | None = None) -> Response:
        """The audience, reachable count and estimated cost per channel (SMS by segments of
        the text rendered for a sample of the audience); `problems` names what is missing."""
        estimate = mailing_cost_estimate(mailing=self.get_object())
        return Response(MailingCostEstimateSerializer(estimate).data)

    @extend_schema(request=MailingTestSendSerializer,
                   responses=MailingTestMessageSerializer(many=True))
    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request: Request, pk: str | None = None) -> Response:
        """Send the mailing's message now, through its gateway, to up to 20 members or typed
        addresses, marked as a test; answers each test message with its status."""
        mailing = self.get_object()
        payload = MailingTestSendSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        sent = service_call(lambda: services.mailing_test_send(
            mailing=mailing, by=request.user, **payload.validated_data))
        return Response(MailingTestMessageSerializer(sent, many=True).data)

    def _transition(self, change: Callable[[Mailing], Mailing]) -> Response:
        mailing = service_call(lambda: change(self.get_object()))
        return Response(MailingSerializer(mailing, context=self.get_serializer_context()).data)

    def _scheduled(self, change: Callable[[Mailing], Mailing]) -> Response:
        mailing = service_call(lambda: change(self.get_object()))
        return Response(MailingScheduledSerializer(
            mailing, context=self.get_serializer_context()).data)

    @extend_schema(request=MailingScheduleSerializer, responses=MailingScheduledSerializer)
    @action(detail=True, methods=["post"])
    def schedule(self, request: Request, pk: str | None = None) -> Response:
        """Schedule the mailing at `scheduled_at` (now when omitted). Over what is left of
        its campaign's budget it is refused (400, `budget`) with ENGAGE_BUDGET_BLOCK, or
        scheduled with `budget_warning` saying by how much."""
        payload = MailingScheduleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        at = payload.validated_data.get("scheduled_at")
        return self._scheduled(lambda m: services.mailing_schedule(mailing=m, at=at,
                                                                   by=request.user))

    @extend_schema(request=None, responses=MailingScheduledSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """Start the mailing now instead of at its scheduled time (the budget as in
        `schedule`)."""
        return self._scheduled(lambda m: services.mailing_start_now(mailing=m,
                                                                    by=request.user))

    @extend_schema(request=None, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve the mailing as it is now, as the second person a mailing larger than
        ENGAGE_APPROVAL_THRESHOLD needs before it is scheduled (not its creator; void once
        its audience or content changes). Needs `communications.approve_mailing`."""
        return self._transition(lambda m: services.mailing_approve(mailing=m,
                                                                   by=request.user))

    @extend_schema(request=None, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stop claiming messages; batches already handed to workers finish."""
        return self._transition(lambda m: services.mailing_pause(mailing=m))

    @extend_schema(request=None, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Send the remaining queued messages; nothing sent before the pause is sent again."""
        return self._transition(lambda m: services.mailing_resume(mailing=m))

    @extend_schema(request=None, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the mailing; messages not yet sent end as cancelled."""
        return self._transition(lambda m: services.mailing_cancel(mailing=m))

    @extend_schema(responses=MailingReportSerializer)
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str | None = None) -> Response:
        """The mailing's report, as on its admin page: the audience split, the funnel (cumulative:
        a clicked message was also sent, delivered and opened), messages sent per time bucket,
        the cost so far per gateway and the errors by provider code. Test sends are not
        counted."""
        # Not get_object(): the list's per-status counters would be read for nothing. DRF's
        # get_object_or_404, which answers 404 to an id that is not a number, as get_object.
        mailing = generics.get_object_or_404(Mailing.objects.select_related("template"), pk=pk)
        self.check_object_permissions(request, mailing)
        return Response(MailingReportSerializer(mailing_report(mailing=mailing)).data)

    @extend_schema(parameters=[MailingCalendarQuerySerializer],
                   responses=MessagingCalendarSerializer)
    @action(detail=False, methods=["get"])
    def calendar(self, request: Request) -> Response:
        """Day by day from `start` to `end` (at most 92 days, in the program's time zone): the
        mailings that go out, to how many members, and the members in two or more of them."""
        query = MailingCalendarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        calendar = messaging_calendar(**query.validated_data)
        return Response(MessagingCalendarSerializer(calendar).data)


class TriggerMailingViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin,
                            viewsets.ReadOnlyModelViewSet):
    """Trigger mailings with their trigger: a draft is created and changed here, then
    activated; from then on it sends a message per matching event or date until it is
    cancelled. Pause, resume, cancel and the report are the mailings' own
    (/mailings/{id}/pause/ ...)."""

    serializer_class = TriggerMailingSerializer
    filterset_class = MailingFilter

    def get_queryset(self):
        return (mailings_with_counts().filter(kind=Mailing.Kind.TRIGGER).select_related("trigger")
                .prefetch_related("variants"))

    def get_serializer_class(self):
        if self.action in ("create", "update", "partial_update"):
            return TriggerMailingWriteSerializer
        return super().get_serializer_class()

    def _written(self, mailing: Mailing, code: int = status.HTTP_200_OK) -> Response:
        mailing = self.get_queryset().get(pk=mailing.pk)
        return Response(TriggerMailingSerializer(
            mailing, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=TriggerMailingWriteSerializer, responses={201: TriggerMailingSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        return self._written(*_draft_write(
            TriggerMailingWriteSerializer(data=request.data),
            lambda fields: trigger_mailing_create(by=request.user, **fields)))

    @extend_schema(request=TriggerMailingWriteSerializer, responses=TriggerMailingSerializer)
    def update(self, request: Request, *args, **kwargs) -> Response:
        mailing = self.get_object()
        return self._written(*_draft_write(
            TriggerMailingWriteSerializer(mailing, data=request.data,
                                          partial=kwargs.get("partial", False)),
            lambda fields: trigger_mailing_update(mailing=mailing, **fields)))

    @extend_schema(request=None, responses=TriggerMailingSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        """Start answering events and dates from now on (events recorded before are not)."""
        return self._written(service_call(lambda: trigger_activate(mailing=self.get_object())))
