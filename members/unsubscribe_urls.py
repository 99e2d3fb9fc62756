from django.urls import path

from members import views

# Included at the site root under the "members-public" namespace (members/public_urls.py).
urlpatterns = [
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("u/<str:token>/preferences", views.unsubscribe_preferences,
         name="unsubscribe-preferences"),
    path("u/<str:token>/saved", views.unsubscribe_saved, name="unsubscribe-saved"),
]
