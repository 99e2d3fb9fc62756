from django.urls import path
from rest_framework.routers import SimpleRouter

from members.api import MemberViewSet, SuppressionViewSet
from members.api_devices import DeviceDetailView, DeviceListView
from members.api_feedback import (
    FeedbackAttachmentView,
    FeedbackReplyView,
    FeedbackThreadDetailView,
    FeedbackThreadListView,
    StaffFeedbackAnswerView,
    StaffFeedbackAttachmentView,
    StaffFeedbackStatusView,
    StaffFeedbackThreadDetailView,
    StaffFeedbackThreadListView,
)
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
from members.api_preferences import PreferencesView

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
    path("me/preferences/", PreferencesView.as_view(), name="me-preferences"),
    path("me/devices/", DeviceListView.as_view(), name="me-devices"),
    path("me/devices/<int:device_id>/", DeviceDetailView.as_view(), name="me-device"),
    path("me/feedback/", FeedbackThreadListView.as_view(), name="me-feedback"),
    path("me/feedback/<int:thread_id>/", FeedbackThreadDetailView.as_view(),
         name="me-feedback-thread"),
    path("me/feedback/<int:thread_id>/messages/", FeedbackReplyView.as_view(),
         name="me-feedback-messages"),
    path("me/feedback/<int:thread_id>/messages/<int:message_id>/attachment/",
         FeedbackAttachmentView.as_view(), name="me-feedback-attachment"),
]

urlpatterns: list = [
    *me_urlpatterns,
    path("members/import/", MemberImportView.as_view(), name="member-import"),
    path("members/export.csv", MemberExportView.as_view(), name="member-export"),
    # Support's side of the members' feedback threads.
    path("feedback/", StaffFeedbackThreadListView.as_view(), name="feedback"),
    path("feedback/<int:thread_id>/", StaffFeedbackThreadDetailView.as_view(),
         name="feedback-thread"),
    path("feedback/<int:thread_id>/answer/", StaffFeedbackAnswerView.as_view(),
         name="feedback-answer"),
    path("feedback/<int:thread_id>/status/", StaffFeedbackStatusView.as_view(),
         name="feedback-status"),
    path("feedback/<int:thread_id>/messages/<int:message_id>/attachment/",
         StaffFeedbackAttachmentView.as_view(), name="feedback-attachment"),
    *router.urls,
]
