from django.urls import path

from members.confirmation_views import email_confirm_view

urlpatterns = [
    path("confirm/<str:token>/", email_confirm_view, name="email-confirm"),
]
