from django.urls import path

from communications import account_views

app_name = "communications-account"

urlpatterns = [
    path("messages/", account_views.inbox, name="inbox"),
    path("messages/<int:message_id>/read/", account_views.message_read, name="message-read"),
]
