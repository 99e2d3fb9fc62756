from __future__ import annotations

from collections.abc import Callable

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from communications import services
from communications.models import Mailing
from communications.selectors import mailings_with_counts
from communications.serializers import MailingScheduleSerializer, MailingSerializer
from config.api import service_call


class MailingFilter(django_filters.FilterSet):
    class Meta:
        model = Mailing
        fields = ["state", "campaign", "target_group", "gateway"]


class MailingViewSet(viewsets.ReadOnlyModelViewSet):
    """Mailings with their message counters per status, and their state changes."""

    serializer_class = MailingSerializer
    filterset_class = MailingFilter

    def get_queryset(self):
        return mailings_with_counts()

    def _transition(self, change: Callable[[Mailing], Mailing]) -> Response:
        mailing = service_call(lambda: change(self.get_object()))
        return Response(MailingSerializer(mailing, context=self.get_serializer_context()).data)

    @extend_schema(request=MailingScheduleSerializer, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def schedule(self, request: Request, pk: str | None = None) -> Response:
        """Schedule the mailing at `scheduled_at` (now when omitted)."""
        payload = MailingScheduleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        at = payload.validated_data.get("scheduled_at")
        return self._transition(lambda m: services.mailing_schedule(mailing=m, at=at))

    @extend_schema(request=None, responses=MailingSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """Start the mailing now instead of at its scheduled time."""
        return self._transition(lambda m: services.mailing_start_now(mailing=m))

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
