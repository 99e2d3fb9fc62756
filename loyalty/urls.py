from django.urls import include, path

from loyalty.favorites.api import (
    FavoritePicksFeedView,
    MemberFavoritePicksView,
    MemberFavoritesView,
)
from loyalty.integration import api as integration

urlpatterns: list = [
    # The member's own (the mobile app).
    path("me/favorite-products/", MemberFavoritesView.as_view(), name="me-favorite-products"),
    path("me/favorite-products/<int:offer_id>/picks/", MemberFavoritePicksView.as_view(),
         name="me-favorite-product-picks"),
    # The loyalty engine's feed of picks.
    path("favorite-products/picks/", FavoritePicksFeedView.as_view(),
         name="favorite-product-picks"),
    # The integration API: the loyalty engine, the shop and the POS, with API keys.
    path("integration/members/", integration.MemberUpsertView.as_view(),
         name="integration-members"),
    path("integration/orders/", integration.OrderRecordView.as_view(),
         name="integration-orders"),
    path("integration/orders/<str:external_id>/refund/", integration.OrderRefundView.as_view(),
         name="integration-order-refund"),
    path("integration/vouchers/", integration.VoucherIssueView.as_view(),
         name="integration-vouchers"),
    path("integration/vouchers/<str:code>/redeem/", integration.VoucherRedeemView.as_view(),
         name="integration-voucher-redeem"),
    path("integration/events/", integration.EventPostView.as_view(), name="integration-events"),
    path("integration/events/batch/", integration.EventBatchView.as_view(),
         name="integration-events-batch"),
    # Outgoing webhooks: subscriptions, deliveries, replay (staff).
    path("", include("loyalty.webhooks.urls")),
]
