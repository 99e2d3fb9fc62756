"""Favorite products over the API: the member's offers and picks (/api/v1/me/favorite-products/)
and the feed of picks the loyalty engine reads to give the benefit
(/api/v1/favorite-products/picks/, staff and integrations only).

Refusals of a member's picks answer `{"code", "detail"}`: 400 `too_many_picks` and
`not_a_candidate` (the request is wrong), 409 `offer_inactive` and `picks_locked` (the offer's
state forbids any change now); nothing is changed by a refused request.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import F, Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty.favorites.selectors import (
    member_favorite_offers,
    member_favorite_offers_visible,
)
from loyalty.favorites.serializers import (
    EngineSelectionSerializer,
    MemberFavoriteOfferSerializer,
    MemberFavoritesSerializer,
    PicksReplaceSerializer,
)
from loyalty.favorites.services import FavoritePicksRefused, favorite_picks_replace
from loyalty.models import FavoriteProductPick, FavoriteProductsSelection
from members.api_me import MemberApiView
from members.authentication import request_member

REFUSAL_STATUS = {"offer_inactive": status.HTTP_409_CONFLICT,
                  "picks_locked": status.HTTP_409_CONFLICT}

class FavoritesErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable: offer_inactive, picks_locked, "
                                           "too_many_picks, not_a_candidate, not_found.")
    detail = serializers.CharField()


class MemberFavoritesView(MemberApiView):
    @extend_schema(responses=MemberFavoritesSerializer,
                   description="The favorite-products offers running now for the member: "
                               "each with the member's candidates, current picks, the pick "
                               "limit, the deadline for changes and the benefit. A short list "
                               "(offers running at once), so not paginated.")
    def get(self, request: Request) -> Response:
        entries = member_favorite_offers(member=request_member(request))
        return Response(MemberFavoritesSerializer({"offers": entries}).data)


class MemberFavoritePicksView(MemberApiView):
    @extend_schema(
        request=PicksReplaceSerializer,
        responses={200: MemberFavoriteOfferSerializer,
                   400: OpenApiResponse(FavoritesErrorSerializer,
                                        description="too_many_picks, not_a_candidate, or the "
                                                    "body's field errors."),
                   404: OpenApiResponse(FavoritesErrorSerializer,
                                        description="No such offer for this member."),
                   409: OpenApiResponse(FavoritesErrorSerializer,
                                        description="offer_inactive, picks_locked.")},
        description="Replace the member's picks of the offer with these products. All or "
                    "nothing: a refused request changes nothing.")
    def put(self, request: Request, offer_id: int) -> Response:
        member = request_member(request)
        body = PicksReplaceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        offer = member_favorite_offers_visible(member=member).filter(pk=offer_id).first()
        if offer is None:
            return Response({"code": "not_found", "detail": "no such offer"},
                            status=status.HTTP_404_NOT_FOUND)
        try:
            favorite_picks_replace(member=member, offer=offer,
                                   product_ids=body.validated_data["product_ids"])
        except FavoritePicksRefused as refused:
            return Response({"code": refused.code, "detail": refused.message},
                            status=REFUSAL_STATUS.get(refused.code,
                                                      status.HTTP_400_BAD_REQUEST))
        entry = next(entry for entry in member_favorite_offers(member=member)
                     if entry.offer.pk == offer.pk)
        return Response(MemberFavoriteOfferSerializer(entry).data)

    @extend_schema(request=PicksReplaceSerializer,
                   responses={200: MemberFavoriteOfferSerializer,
                              400: FavoritesErrorSerializer, 404: FavoritesErrorSerializer,
                              409: FavoritesErrorSerializer},
                   description="The same as PUT, for clients that only POST.")
    def post(self, request: Request, offer_id: int) -> Response:
        return self.put(request, offer_id)


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    """An id: a whole number, where NumberFilter would take 1.5 too."""

    field_class = forms.IntegerField


class FavoritePicksFilter(django_filters.FilterSet):
    offer = IdFilter(field_name="offer_id", required=True, min_value=1)
    member_external_id = django_filters.CharFilter(
        field_name="member__external_id", help_text="One member, by their external id.")
    updated_since = django_filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte",
        help_text="Picks changed at or after this ISO 8601 time.")

    class Meta:
        model = FavoriteProductsSelection
        fields = ["offer", "member_external_id", "updated_since"]


class ChangedFirstCursorPagination(CursorPagination):
    """Oldest change first, so the engine pages forward and polls again with
    `updated_since` set to the last `updated_at` it read."""

    ordering = ("updated_at", "id")
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema_view(get=extend_schema(parameters=[OpenApiParameter(
    "offer", OpenApiTypes.INT, required=True, description="The offer's id.")]))
class FavoritePicksFeedView(generics.ListAPIView):
    """Each member's picks of one offer, for the loyalty engine to give the benefit: one row
    per member who saved picks, with an empty list when they dropped them all."""

    serializer_class = EngineSelectionSerializer
    filterset_class = FavoritePicksFilter
    pagination_class = ChangedFirstCursorPagination
    queryset = (FavoriteProductsSelection.objects
                .annotate(member_external_id=F("member__external_id"))
                .prefetch_related(Prefetch("picks", queryset=FavoriteProductPick.objects
                                           .select_related("product").order_by("product__sku"))))
