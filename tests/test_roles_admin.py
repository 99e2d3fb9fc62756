"""The admin per role: Django's model permissions decide the screens, and the custom actions
and pages check the permission of what they do."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from communications.models import Gateway
from config.roles import ADMINISTRATOR, ANALYST, MARKETER, SUPPORT
from tests.campaigns.factories import TargetGroupFactory
from tests.communications.factories import GatewayFactory
from tests.roles_support import admin_as  # noqa: F401

pytestmark = pytest.mark.django_db

SCREENS = {
    "mailings": "/admin/communications/mailing/",
    "target groups": "/admin/campaigns/targetgroup/",
    "templates": "/admin/communications/template/",
    "campaigns": "/admin/campaigns/campaign/",
    "gateways": "/admin/communications/gateway/",
    "members": "/admin/members/member/",
    "feedback": "/admin/members/feedbackthread/",
    "api keys": "/admin/loyalty/apikey/",
    "webhooks": "/admin/loyalty/webhooksubscription/",
    "users": "/admin/auth/user/",
    "audit log": "/admin/auditlog/logentry/",
}
OPEN_TO = {
    MARKETER: {"mailings", "target groups", "templates", "campaigns", "gateways"},
    ANALYST: {"mailings", "templates", "campaigns", "gateways"},
    SUPPORT: {"members", "feedback"},
    ADMINISTRATOR: {"gateways", "api keys", "webhooks", "users", "audit log"},
}


@pytest.mark.parametrize("role", [MARKETER, ANALYST, SUPPORT, ADMINISTRATOR])
def test_each_role_opens_exactly_its_screens(admin_as, role):  # noqa: F811
    client = admin_as(role)

    answers = {screen: client.get(url).status_code for screen, url in SCREENS.items()}

    assert answers == {screen: 200 if screen in OPEN_TO[role] else 403 for screen in SCREENS}


def test_a_staff_user_with_no_role_opens_no_screen(admin_as):  # noqa: F811
    client = admin_as(None)

    assert {client.get(url).status_code for url in SCREENS.values()} == {403}


def test_analyst_cannot_add_a_mailing(admin_as):  # noqa: F811
    assert admin_as(ANALYST).get("/admin/communications/mailing/add/").status_code == 403


def test_marketer_cannot_open_a_gateways_send_test_page(admin_as):  # noqa: F811
    gateway = GatewayFactory()

    response = admin_as(MARKETER).get(f"/admin/communications/gateway/{gateway.pk}/send-test/")

    assert response.status_code == 403


def _run_action(client, changelist: str, action: str, pk: int):
    return client.post(changelist, {"action": action, "index": 0, "_selected_action": [pk]})


def test_gateway_health_check_action_is_the_administrators_not_the_marketers(
        admin_as):  # noqa: F811
    # given
    gateway = GatewayFactory()

    # when
    _run_action(admin_as(MARKETER), "/admin/communications/gateway/", "check_health_now",
                gateway.pk)

    # then
    assert Gateway.objects.get(pk=gateway.pk).last_health_at is None
    _run_action(admin_as(ADMINISTRATOR), "/admin/communications/gateway/", "check_health_now",
                gateway.pk)
    assert Gateway.objects.get(pk=gateway.pk).last_health_at is not None


def test_target_group_member_export_action_needs_the_member_view_permission(
        admin_as):  # noqa: F811
    # given
    group = TargetGroupFactory()
    client = admin_as(MARKETER)

    # when
    refused = _run_action(client, "/admin/campaigns/targetgroup/", "export_members", group.pk)
    User.objects.get(username="staff-marketer").user_permissions.add(
        Permission.objects.get(content_type__app_label="members", codename="view_member"))
    allowed = _run_action(client, "/admin/campaigns/targetgroup/", "export_members", group.pk)

    # then
    assert not refused.get("Content-Type", "").startswith("text/csv")
    assert allowed.get("Content-Type", "").startswith("text/csv")


def test_member_import_page_needs_the_add_as_well_as_the_change_permission(
        admin_as):  # noqa: F811
    # given
    client = admin_as(None)
    user = User.objects.get(username="staff-none")
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="members", codename__in=["view_member", "change_member"]))

    # then
    assert client.get("/admin/members/member/import/").status_code == 403
    assert admin_as(SUPPORT).get("/admin/members/member/import/").status_code == 200
