from django.urls import path

from campaigns import account_views

app_name = "campaigns-account"

urlpatterns = [
    path("offers/", account_views.offers, name="offers"),
    path("offers/<int:offer_id>/open/", account_views.offer_open, name="offer-open"),
]
