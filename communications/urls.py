from django.urls import path
from rest_framework.routers import SimpleRouter

from communications.api import MailingViewSet, TriggerMailingViewSet
from communications.api_me import MessageListView, MessageReadView

router = SimpleRouter()
router.register("mailings", MailingViewSet, basename="mailing")
router.register("trigger-mailings", TriggerMailingViewSet, basename="trigger-mailing")

urlpatterns = [
    # The member's inbox (the app): acts for the signed-in member only.
    path("me/messages/", MessageListView.as_view(), name="me-messages"),
    path("me/messages/<int:message_id>/read/", MessageReadView.as_view(),
         name="me-message-read"),
    *router.urls,
]
