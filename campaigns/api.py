"""Staff API for target groups, static lists and offers (promo content).

Views stay thin: each operation hands plain values to one selector or service, and a Django
ValidationError (keyed by field, or by the path in the rule tree) becomes a 400.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.models import Campaign, PromoContent, StaticList, TargetGroup
from campaigns.rules import catalog, rules_error_lines
from campaigns.rules.schema import rules_json_schema
from campaigns.selectors_metrics import campaign_lifts, campaign_metrics
from campaigns.selectors_spend import campaigns_with_spend
from campaigns.serializers import (
    AudiencePreviewSerializer,
    CampaignReportSerializer,
    CampaignSerializer,
    FreezeSerializer,
    OfferSerializer,
    RulesPreviewSerializer,
    StaticListCreateSerializer,
    StaticListSerializer,
    TargetGroupSerializer,
)
from config.api import service_call
from members.api_imports import CSVRenderer
from members.exports import members_export_response


def _preview(tree: Any, *, target_group_id: int | None, sample_size: int = 10) -> Response:
    try:
        preview = selectors.audience_preview(tree=tree, target_group_id=target_group_id,
                                             sample_size=sample_size)
    except DjangoValidationError as error:
        raise serializers.ValidationError({"rules": rules_error_lines(error)}) from error
    return Response(AudiencePreviewSerializer(preview.as_dict()).data)


class TargetGroupViewSet(viewsets.ModelViewSet):
    """Target groups: rule trees over members; preview, export, freeze and watch them."""

    queryset = TargetGroup.objects.order_by("-id")
    serializer_class = TargetGroupSerializer
    # A preview saves nothing; an export lists members' addresses; a freeze makes a list.
    staff_action_permissions = {"preview": ["view"], "export": ["view", "members.view_member"],
                                "freeze": ["view", "campaigns.add_staticlist"]}
    filterset_fields = ["is_watched"]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"], filterset_fields=[])
    def fields(self, request: Request) -> Response:
        """Every field a condition may name, with its operators, kind and choices."""
        return Response(catalog())

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"], url_path="rules-schema")
    def rules_schema(self, request: Request) -> Response:
        """The JSON Schema of a rule tree, for clients that check a tree before posting it."""
        return Response(rules_json_schema())

    @extend_schema(request=RulesPreviewSerializer, responses=AudiencePreviewSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Size, reachable count per channel and a sample for a tree, without saving it."""
        payload = RulesPreviewSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return _preview(payload.validated_data["rules"], target_group_id=None,
                        sample_size=payload.validated_data["sample_size"])

    @extend_schema(request=None, responses=AudiencePreviewSerializer)
    @action(detail=True, methods=["get"])
    def size(self, request: Request, pk: str | None = None) -> Response:
        """The saved group's size, reachable count per channel and a sample."""
        group = self.get_object()
        return _preview(group.rules, target_group_id=group.pk)

    @extend_schema(request=None, responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"],
            renderer_classes=[CSVRenderer])
    def export(self, request: Request, pk: str | None = None) -> Any:
        """The group's members as CSV in the import's columns, streamed."""
        group = self.get_object()
        return members_export_response(
            queryset=selectors.target_group_members(target_group=group), by=request.user,
            filename=f"target-group-{group.pk}.csv")

    @extend_schema(request=FreezeSerializer, responses={201: StaticListSerializer})
    @action(detail=True, methods=["post"])
    def freeze(self, request: Request, pk: str | None = None) -> Response:
        """Freeze the group's current members into a new static list."""
        payload = FreezeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        group = self.get_object()
        static_list = service_call(lambda: services.target_group_freeze(
            target_group=group, name=payload.validated_data.get("name", "")))
        return Response(StaticListSerializer(static_list).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=TargetGroupSerializer)
    @action(detail=True, methods=["post"])
    def watch(self, request: Request, pk: str | None = None) -> Response:
        """Keep the membership current and emit TARGET_GROUP_ENTERED / LEFT events."""
        group = services.target_group_watch(target_group=self.get_object())
        return Response(TargetGroupSerializer(group).data)

    @extend_schema(request=None, responses=TargetGroupSerializer)
    @action(detail=True, methods=["post"])
    def unwatch(self, request: Request, pk: str | None = None) -> Response:
        group = services.target_group_unwatch(target_group=self.get_object())
        return Response(TargetGroupSerializer(group).data)


class CampaignViewSet(viewsets.ModelViewSet):
    """Campaigns: goal, owner, status, period and budget, with their spend, what is left of
    the budget and their channel mix (read-only, computed with the rows of a page)."""

    serializer_class = CampaignSerializer
    filterset_fields = ["status", "owner"]
    staff_action_permissions = {"report": ["view"]}

    def get_queryset(self) -> QuerySet[Campaign]:
        return campaigns_with_spend(Campaign.objects.order_by("-id"))

    @extend_schema(responses=CampaignReportSerializer)
    @action(detail=True, methods=["get"], filterset_fields=[])
    def report(self, request: Request, pk: str | None = None) -> Response:
        """The campaign's figures: spend, reach, credited orders and revenue, ROI, and each
        mailing's funnel, cost, revenue and (with a control group) lift."""
        campaign = self.get_object()
        metrics = campaign_metrics(campaign)
        return Response(CampaignReportSerializer(
            metrics, context={"lifts": campaign_lifts(campaign, metrics)}).data)


class StaticListViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Static lists: uploaded member ids or external ids, or target groups frozen by hand."""

    queryset = StaticList.objects.order_by("-id")
    serializer_class = StaticListSerializer
    filterset_fields = ["source", "frozen_from"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request={"application/json": StaticListCreateSerializer,
                            "multipart/form-data": StaticListCreateSerializer},
                   responses={201: StaticListSerializer})
    def create(self, request: Request) -> Response:
        """Create a list from member ids, external ids, or a CSV file of external ids. Unknown
        ids are refused by name and nothing is written."""
        payload = StaticListCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        external_ids = list(data["external_ids"])
        if data.get("file") is not None:
            external_ids += service_call(
                lambda: services.static_list_ids_read(data["file"].read()))
        static_list = service_call(lambda: services.static_list_create(
            name=data["name"], description=data["description"], member_ids=data["member_ids"],
            external_ids=external_ids))
        return Response(StaticListSerializer(static_list).data, status=status.HTTP_201_CREATED)


class OfferFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(status, status) for status in ("scheduled", "showing", "ended", "off")],
        method="filter_status", label="Status")
    title = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = PromoContent
        fields = ["placement", "is_active", "campaign", "target_group"]

    def filter_status(self, queryset: QuerySet[PromoContent], name: str,
                      value: str) -> QuerySet[PromoContent]:
        return queryset.filter(selectors.offer_status_q(value))


class OfferViewSet(viewsets.ModelViewSet):
    """Offers (promo content) members see in the account pages and the app, with their view
    and click counts. Saved through the same validation as the admin."""

    serializer_class = OfferSerializer
    filterset_class = OfferFilter

    def get_queryset(self) -> QuerySet[PromoContent]:
        return selectors.offers_with_counts(PromoContent.objects.order_by("-id"))
