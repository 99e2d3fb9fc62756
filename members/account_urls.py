from django.urls import path

from members import account_views, feedback_views, preferences_views

app_name = "account"

urlpatterns = [
    path("", account_views.home, name="home"),
    path("sign-in/", account_views.sign_in, name="sign-in"),
    path("sign-in/code/", account_views.sign_in_code, name="sign-in-code"),
    path("sign-out/", account_views.sign_out, name="sign-out"),
    path("preferences/", preferences_views.preferences, name="preferences"),
    path("feedback/", feedback_views.feedback_list, name="feedback"),
    path("feedback/<int:thread_id>/", feedback_views.feedback_thread, name="feedback-thread"),
    path("feedback/<int:thread_id>/messages/<int:message_id>/attachment/",
         feedback_views.feedback_attachment, name="feedback-attachment"),
]
