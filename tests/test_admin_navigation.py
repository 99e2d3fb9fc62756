"""The admin organized by task (config/admin_site.py): every screen in a group, each role seeing
only the screens its permissions open, in the groups of its work; and the Engage theme."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders

from config.admin_site import TASK_GROUPS, EngageAdminSite
from config.roles import ADMINISTRATOR, ANALYST, MARKETER, SUPPORT
from tests.roles_support import admin_as  # noqa: F401

pytestmark = pytest.mark.django_db

PLACED = [label for group in TASK_GROUPS for label in group.models]


def _groups(app_list) -> dict[str, list[str]]:
    """Group label -> the model labels listed in it, from an admin page's app list."""
    return {group["app_label"]: [model["model"]._meta.label for model in group["models"]]
            for group in app_list}


def test_every_registered_model_has_a_task_group():
    registered = {model._meta.label for model in admin.site._registry}

    assert registered - set(PLACED) == set()


def test_task_groups_name_only_registered_models_and_each_once():
    registered = {model._meta.label for model in admin.site._registry}

    assert set(PLACED) - registered == set()
    assert len(PLACED) == len(set(PLACED))


def test_the_default_admin_site_is_engages():
    assert isinstance(admin.site, EngageAdminSite)


@pytest.mark.parametrize(("role", "groups"), [
    (MARKETER, ["audience", "content", "sending", "results", "settings"]),
    (ANALYST, ["content", "sending", "results"]),
    (SUPPORT, ["audience", "results"]),
    (ADMINISTRATOR, ["audience", "sending", "results", "settings"]),
])
def test_each_role_sees_the_task_groups_of_its_work_in_order(admin_as, role,  # noqa: F811
                                                             groups):
    response = admin_as(role).get("/admin/")

    assert list(_groups(response.context["app_list"])) == groups


def test_support_sees_members_and_feedback_under_audience_and_nothing_of_sending(
        admin_as):  # noqa: F811
    groups = _groups(admin_as(SUPPORT).get("/admin/").context["app_list"])

    assert groups["audience"][:2] == ["members.Member", "members.FeedbackThread"]
    assert "sending" not in groups
    assert not any(label.startswith(("communications.", "campaigns."))
                   for labels in groups.values() for label in labels)


def test_a_group_lists_only_the_screens_the_role_may_open(admin_as):  # noqa: F811
    groups = _groups(admin_as(MARKETER).get("/admin/").context["app_list"])

    assert groups["settings"] == ["loyalty.CustomEventType"]
    assert groups["sending"] == ["communications.Mailing", "communications.TriggerMailing",
                                 "communications.Gateway", "communications.FrequencyCap",
                                 "communications.QuietHours"]


def test_administrator_finds_api_keys_webhooks_and_users_under_settings(
        admin_as):  # noqa: F811
    groups = _groups(admin_as(ADMINISTRATOR).get("/admin/").context["app_list"])

    assert groups["settings"] == ["loyalty.ApiKey", "loyalty.WebhookSubscription",
                                  "loyalty.WebhookDelivery", "loyalty.CustomEventType",
                                  "auth.User", "auth.Group"]


def test_a_staff_user_with_no_role_sees_no_group(admin_as):  # noqa: F811
    response = admin_as(None).get("/admin/")

    assert response.context["app_list"] == []
    assert "permission to view or edit anything" in response.content.decode()


def test_the_sidebar_of_a_screen_lists_the_same_task_groups(admin_as):  # noqa: F811
    response = admin_as(SUPPORT).get("/admin/members/member/")

    assert list(_groups(response.context["available_apps"])) == ["audience", "results"]
    assert 'href="/admin/#task-audience"' in response.content.decode()


def test_an_apps_own_page_keeps_djangos_list_of_that_app(admin_as):  # noqa: F811
    response = admin_as(SUPPORT).get("/admin/members/")

    assert [app["app_label"] for app in response.context["app_list"]] == ["members"]


def test_the_home_page_anchors_each_group_for_the_sidebar(admin_as):  # noqa: F811
    page = admin_as(SUPPORT).get("/admin/").content.decode()

    assert 'id="task-audience"' in page
    assert 'id="task-results"' in page


def test_every_admin_page_carries_the_engage_name_and_theme(client):
    page = client.get("/admin/login/").content.decode()

    assert '<div id="site-name"><a href="/admin/">Engage</a></div>' in page
    assert "engage/admin.css" in page
    assert finders.find("engage/admin.css") is not None

