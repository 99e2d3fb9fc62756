from django.urls import path
from rest_framework.routers import SimpleRouter

from members.api import MemberViewSet, SuppressionViewSet
from members.api_imports import MemberExportView, MemberImportView
from members.api_me import (
    HomeView,
    ProfileView,
    SignInRequestView,
    SignInVerifyView,
    SignOutView,
    TokenDetailView,
    TokenListView,
)

router = SimpleRouter()
router.register("members", MemberViewSet, basename="member")
router.register("suppressions", SuppressionViewSet, basename="suppression")

# Fixed paths such as members/import/ go before the router's; member ids are digits only, so
# neither can shadow the other.
# The member's own API (the mobile app): me/ endpoints act for the signed-in member only.
me_urlpatterns: list = [
    path("me/", ProfileView.as_view(), name="me"),
    path("me/home/", HomeView.as_view(), name="me-home"),
    path("me/sign-in/", SignInRequestView.as_view(), name="me-sign-in"),
    path("me/sign-in/verify/", SignInVerifyView.as_view(), name="me-sign-in-verify"),
    path("me/sign-out/", SignOutView.as_view(), name="me-sign-out"),
    path("me/tokens/", TokenListView.as_view(), name="me-tokens"),
    path("me/tokens/<int:token_id>/", TokenDetailView.as_view(), name="me-token"),
]

urlpatterns: list = [
    *me_urlpatterns,
    path("members/import/", MemberImportView.as_view(), name="member-import"),
    path("members/export.csv", MemberExportView.as_view(), name="member-export"),
    *router.urls,
]
