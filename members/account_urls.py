from django.urls import path

from members import account_views

app_name = "account"

urlpatterns = [
    path("", account_views.home, name="home"),
    path("sign-in/", account_views.sign_in, name="sign-in"),
    path("sign-in/code/", account_views.sign_in_code, name="sign-in-code"),
    path("sign-out/", account_views.sign_out, name="sign-out"),
]
