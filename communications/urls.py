from rest_framework.routers import SimpleRouter

from communications.api import MailingViewSet

router = SimpleRouter()
router.register("mailings", MailingViewSet, basename="mailing")

urlpatterns = router.urls
