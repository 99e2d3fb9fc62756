from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.health import healthz

api_v1 = [
    path("", include("communications.urls")),
    path("", include("members.urls")),
    path("", include("campaigns.urls")),
    path("", include("loyalty.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/schema/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Pages members reach from a message, without signing in: unsubscribe, preferences,
    # address confirmation.
    path("", include("members.public_urls")),
    # The member's account pages, signed in with a one-time code.
    path("account/", include("members.account_urls")),
    path("account/", include("communications.account_urls")),
    path("account/", include("loyalty.account_urls")),
    path("account/", include("campaigns.account_urls")),
    # Inbound calls from providers (SMS replies, receipts), each authenticated by signature.
    path("hooks/", include("communications.webhook_urls")),
    # Email services' tracking events, parsed by django-anymail (ANYMAIL_WEBHOOK_SECRET).
    path("hooks/anymail/", include(("communications.anymail_tracking", "anymail"))),
    # Engage's own open pixel and click redirect, for mailings that track engagement.
    path("t/", include("communications.tracking", namespace="tracking")),
    path("healthz", healthz, name="healthz"),
]
