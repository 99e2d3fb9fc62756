from django.urls import path
from rest_framework.routers import SimpleRouter

from campaigns.api import CampaignViewSet, OfferViewSet, StaticListViewSet, TargetGroupViewSet
from campaigns.api_me import OfferCountView, OfferDetailView, OfferListView

router = SimpleRouter()
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("target-groups", TargetGroupViewSet, basename="target-group")
router.register("static-lists", StaticListViewSet, basename="static-list")
router.register("offers", OfferViewSet, basename="offer")

# The member's own offers (the mobile app): only those shown to the signed-in member.
me_urlpatterns = [
    path("me/offers/", OfferListView.as_view(), name="me-offers"),
    path("me/offers/<int:offer_id>/", OfferDetailView.as_view(), name="me-offer"),
    path("me/offers/<int:offer_id>/view/", OfferCountView.as_view(counter="views"),
         name="me-offer-view"),
    path("me/offers/<int:offer_id>/click/", OfferCountView.as_view(counter="clicks"),
         name="me-offer-click"),
]

urlpatterns = [*me_urlpatterns, *router.urls]
