"""A staff session on the integration API (someone trying it from the browser) may do what its
role's model permissions allow there, as in the admin: a scope stands for those permissions."""

from __future__ import annotations

import pytest

from config.roles import MARKETER, SUPPORT
from loyalty.models import Event
from tests.members.factories import MemberFactory
from tests.roles_support import api_as  # noqa: F401

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/integration/members/"
EVENTS = "/api/v1/integration/events/"


def _event(member) -> dict:
    return {"type": "CART_ABANDONED", "member": member.external_id,
            "occurred_at": "2026-12-01T10:00:00+00:00", "payload": {"items": 3}}


def test_a_staff_session_without_a_role_records_nothing(api_as):  # noqa: F811
    client = api_as(None)

    response = client.post(MEMBERS, {"external_id": "E1", "first_name": "Ana"}, format="json")

    assert response.status_code == 403
    assert "members.add_member" in response.json()["detail"]


def test_support_upserts_a_member_through_its_session(api_as):  # noqa: F811
    response = api_as(SUPPORT).post(MEMBERS, {"external_id": "E1", "first_name": "Ana"},
                                    format="json")

    assert response.status_code == 201


def test_a_marketer_cannot_record_events_through_its_session(api_as):  # noqa: F811
    member = MemberFactory()

    response = api_as(MARKETER).post(EVENTS, _event(member), format="json")

    assert response.status_code == 403
    assert not Event.objects.filter(member=member, type="CART_ABANDONED").exists()


def test_a_superuser_session_records_an_event(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(EVENTS, _event(member), content_type="application/json")

    assert response.status_code == 201
    assert Event.objects.filter(member=member, type="CART_ABANDONED").exists()
