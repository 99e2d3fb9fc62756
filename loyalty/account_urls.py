from django.urls import path

from loyalty.favorites import views

app_name = "loyalty-account"

urlpatterns = [
    path("favorites/", views.favorites, name="favorites"),
    path("favorites/<int:offer_id>/", views.favorites_save, name="favorites-save"),
]
