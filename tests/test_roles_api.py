"""The staff API per role: model permissions decide (config.permissions), and a staff user
with no role is refused everywhere."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from config.permissions import StaffModelPermissions
from config.roles import ADMINISTRATOR, ANALYST, MARKETER, SUPPORT
from tests.communications.factories import MailingFactory
from tests.roles_support import (
    api_as,  # noqa: F401
    staff_user,
)

pytestmark = pytest.mark.django_db

# The member's own API and the integration API have their own authentication and checks.
NOT_STAFF = ("/api/v1/me/", "/api/v1/integration/")


def test_analyst_reads_mailings_and_their_report(api_as):  # noqa: F811
    mailing = MailingFactory()
    analyst = api_as(ANALYST)

    assert analyst.get("/api/v1/mailings/").status_code == 200
    assert analyst.get(f"/api/v1/mailings/{mailing.pk}/report/").status_code == 200


def test_analyst_cannot_create_or_send_a_mailing(api_as):  # noqa: F811
    mailing = MailingFactory()
    analyst = api_as(ANALYST)

    assert analyst.post("/api/v1/mailings/", {"name": "x"}, format="json").status_code == 403
    assert analyst.post(f"/api/v1/mailings/{mailing.pk}/schedule/").status_code == 403
    assert analyst.post(f"/api/v1/mailings/{mailing.pk}/test-send/").status_code == 403


def test_analyst_cannot_read_members_or_feedback(api_as):  # noqa: F811
    analyst = api_as(ANALYST)

    assert analyst.get("/api/v1/members/").status_code == 403
    assert analyst.get("/api/v1/members/export.csv").status_code == 403
    assert analyst.get("/api/v1/feedback/").status_code == 403


def test_support_reads_members_and_feedback(api_as):  # noqa: F811
    support = api_as(SUPPORT)

    assert support.get("/api/v1/members/").status_code == 200
    assert support.get("/api/v1/suppressions/").status_code == 200
    assert support.get("/api/v1/feedback/").status_code == 200


def test_support_cannot_reach_mailings_target_groups_or_webhooks(api_as):  # noqa: F811
    support = api_as(SUPPORT)

    assert support.get("/api/v1/mailings/").status_code == 403
    assert support.get("/api/v1/target-groups/").status_code == 403
    assert support.get("/api/v1/webhooks/").status_code == 403


def test_marketer_may_create_a_mailing(api_as):  # noqa: F811
    response = api_as(MARKETER).post("/api/v1/mailings/", {"name": "Spring"}, format="json")

    assert response.status_code in (201, 400)


def test_marketer_schedules_a_mailing(api_as):  # noqa: F811
    mailing = MailingFactory()

    response = api_as(MARKETER).post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                     {"scheduled_at": "2030-01-02T09:00:00Z"}, format="json")

    assert response.status_code == 200
    assert response.json()["state"] == "scheduled"


def test_marketer_cannot_reach_webhooks_or_members(api_as):  # noqa: F811
    marketer = api_as(MARKETER)

    assert marketer.get("/api/v1/webhooks/").status_code == 403
    assert marketer.get("/api/v1/members/").status_code == 403


def test_marketer_cannot_export_a_target_groups_members(api_as):  # noqa: F811
    mailing = MailingFactory()
    marketer = api_as(MARKETER)

    assert marketer.get(f"/api/v1/target-groups/{mailing.target_group_id}/").status_code == 200
    assert marketer.get(
        f"/api/v1/target-groups/{mailing.target_group_id}/export/").status_code == 403


def test_administrator_creates_a_webhook_subscription(api_as, settings):  # noqa: F811
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True

    response = api_as(ADMINISTRATOR).post(
        "/api/v1/webhooks/", {"url": "http://127.0.0.1:9/hook", "event_types": ["ORDER_PLACED"]},
        format="json")

    assert response.status_code == 201


def test_administrator_cannot_reach_mailings_or_members(api_as):  # noqa: F811
    administrator = api_as(ADMINISTRATOR)

    assert administrator.get("/api/v1/mailings/").status_code == 403
    assert administrator.get("/api/v1/members/").status_code == 403


def test_a_user_holding_permissions_but_not_staff_is_refused():
    # given
    user = staff_user(SUPPORT)
    User.objects.filter(pk=user.pk).update(is_staff=False)
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))

    # then
    assert client.get("/api/v1/members/").status_code == 403


def _staff_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), re.sub(r"\{[^}]+\}", "1", path))
            for path, operations in schema["paths"].items()
            if path.startswith("/api/v1/") and not path.startswith(NOT_STAFF)
            for method in operations if method in ("get", "post", "put", "patch", "delete")]


def test_every_staff_operation_refuses_a_staff_user_with_no_role(api_as):  # noqa: F811
    client = api_as(None)
    operations = _staff_operations()

    answers = {(method, path): client.generic(method, path, "{}",
                                              content_type="application/json").status_code
               for method, path in operations}

    assert len(operations) > 50
    assert {key: code for key, code in answers.items() if code != 403} == {}


def test_every_staff_operation_names_its_permission_so_a_superuser_passes():
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser(username="root",
                                                            password="a-long-password"))

    refused = [(method, path) for method, path in _staff_operations()
               if client.generic(method, path, "{}",
                                 content_type="application/json").status_code == 403]

    assert refused == []


class _Unscoped(APIView):
    """A staff view that names neither a queryset nor its permissions."""

    def get(self, request):
        return Response({"ok": True})


def test_a_staff_view_that_names_no_permission_is_refused_even_to_a_superuser():
    superuser = User.objects.create_superuser(username="root", password="a-long-password")
    request = APIRequestFactory().get("/unscoped/")
    force_authenticate(request, superuser)

    response = _Unscoped.as_view()(request)

    assert _Unscoped.permission_classes == [StaffModelPermissions]
    assert response.status_code == 403
