"""The member's offers in the app, under /api/v1/me/offers/: the offers shown to the signed-in
member now, one of them, and counting its views and clicks.

An offer the member is not shown (another audience's, another placement's only, ended,
switched off, or no such id) is a 404 for every endpoint, so ids reveal nothing. The list is
bounded (at most `OFFERS_SHOWN_MAX`, highest priority first), so it is not paginated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import PromoContent
from campaigns.selectors import OFFERS_SHOWN_MAX, offer_shown, offers_shown
from campaigns.serializers import MemberOfferSerializer
from campaigns.services import promo_content_count
from config.api import FlatRepresentation
from members.api_me import ErrorSerializer, MemberApiView
from members.authentication import request_member
from members.models import Member

PLACEMENTS = [PromoContent.Placement.APP.value, PromoContent.Placement.ACCOUNT.value]


class OfferListQuerySerializer(serializers.Serializer):
    placement = serializers.ChoiceField(choices=PLACEMENTS, default="app")


def _not_shown() -> Response:
    return Response({"code": "not_found", "detail": "no such offer is shown to you"},
                    status=status.HTTP_404_NOT_FOUND)


class OfferListView(MemberApiView):
    @extend_schema(
        parameters=[OpenApiParameter(
            "placement", str, enum=PLACEMENTS, default="app",
            description="Where the offers are shown: the app (default) or the account pages.")],
        responses={200: MemberOfferSerializer(many=True)},
        description=f"The offers shown to the member now, highest priority first; at most "
                    f"{OFFERS_SHOWN_MAX}, not paginated.")
    def get(self, request: Request) -> Response:
        query = OfferListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        offers = offers_shown(member=request_member(request),
                              placement=query.validated_data["placement"])
        return Response(MemberOfferSerializer(offers, many=True).data)


class OfferDetailView(MemberApiView):
    @extend_schema(responses={200: MemberOfferSerializer, 404: ErrorSerializer},
                   description="One offer shown to the member now (in the app or the account "
                               "pages); 404 for any other.")
    def get(self, request: Request, offer_id: int) -> Response:
        offer = offer_shown(member=request_member(request), offer_id=offer_id)
        if offer is None:
            return _not_shown()
        return Response(MemberOfferSerializer(offer).data)


class OfferCountView(MemberApiView):
    counter = "views"

    @extend_schema(request=None, responses={204: None, 404: ErrorSerializer},
                   description="Count that the app showed the offer to the member (view/) or "
                               "that the member opened its link (click/). Counted per offer "
                               "and day, not per member: a repeated call counts again.")
    def post(self, request: Request, offer_id: int) -> Response:
        offer = offer_shown(member=request_member(request), offer_id=offer_id)
        if offer is None:
            return _not_shown()
        promo_content_count(offer_ids=[offer.pk], counter=self.counter)
        return Response(status=status.HTTP_204_NO_CONTENT)


# The home call's offers, represented field by field (config.api.FlatRepresentation).
_OFFER_REPRESENTATION = FlatRepresentation(MemberOfferSerializer())


def offers_home(member: Member, placement: str) -> dict[str, Any]:
    """members.hooks.ACCOUNT_HOME: the app placement's offers for the home call. The account's
    home page shows its own placement's through a tag that also counts them viewed
    (campaign_offers.account_home_offers), so it gets nothing here."""
    if placement != PromoContent.Placement.APP:
        return {}
    offers = offers_shown(member=member, placement=PromoContent.Placement.APP)
    return {"offers": [_OFFER_REPRESENTATION(offer) for offer in offers]}
