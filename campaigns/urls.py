from rest_framework.routers import SimpleRouter

from campaigns.api import StaticListViewSet, TargetGroupViewSet

router = SimpleRouter()
router.register("target-groups", TargetGroupViewSet, basename="target-group")
router.register("static-lists", StaticListViewSet, basename="static-list")

urlpatterns = router.urls
