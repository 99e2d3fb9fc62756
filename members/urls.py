from django.urls import path
from rest_framework.routers import SimpleRouter

from members.api import MemberViewSet, SuppressionViewSet
from members.api_imports import MemberExportView, MemberImportView

router = SimpleRouter()
router.register("members", MemberViewSet, basename="member")
router.register("suppressions", SuppressionViewSet, basename="suppression")

# Fixed paths such as members/import/ go before the router's; member ids are digits only, so
# neither can shadow the other.
urlpatterns: list = [
    path("members/import/", MemberImportView.as_view(), name="member-import"),
    path("members/export.csv", MemberExportView.as_view(), name="member-export"),
    *router.urls,
]
