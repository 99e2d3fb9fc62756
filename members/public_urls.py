from django.urls import include, path

app_name = "members-public"

urlpatterns = [
    path("", include("members.unsubscribe_urls")),
    path("", include("members.confirm_urls")),
]
