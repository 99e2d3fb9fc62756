from rest_framework.routers import SimpleRouter

from members.api import MemberViewSet, SuppressionViewSet

router = SimpleRouter()
router.register("members", MemberViewSet, basename="member")
router.register("suppressions", SuppressionViewSet, basename="suppression")

# Fixed paths such as members/import/ go before the router's; member ids are digits only, so
# neither can shadow the other.
urlpatterns: list = [*router.urls]
