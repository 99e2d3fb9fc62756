"""A mailing larger than ENGAGE_APPROVAL_THRESHOLD is scheduled only with a second person's
approval, for the audience and content it had when approved (services.approvals)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from config.roles import ANALYST, MARKETER
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _staff(username: str, role: str) -> User:
    user = User.objects.create_user(username=username, password="a-long-test-password",
                                    is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def _api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def ann():
    return _staff("ann", MARKETER)


@pytest.fixture
def bob():
    return _staff("bob", MARKETER)


@pytest.fixture
def large_mailing(settings, ann):
    """Ann's mailing to every member (three), over a threshold of two."""
    settings.ENGAGE_APPROVAL_THRESHOLD = 2
    MemberFactory.create_batch(3)
    return MailingFactory(created_by=ann)


def _schedule(user: User, mailing):
    return _api(user).post(f"/api/v1/mailings/{mailing.pk}/schedule/", {}, format="json")


def _approve(user: User, mailing):
    return _api(user).post(f"/api/v1/mailings/{mailing.pk}/approve/")


def test_a_mailing_over_the_threshold_is_not_scheduled_without_approval(ann, large_mailing):
    response = _schedule(ann, large_mailing)

    assert response.status_code == 400
    assert "a second person must approve it" in response.json()["approval"][0]
    large_mailing.refresh_from_db()
    assert large_mailing.state == "draft"


def test_a_second_marketers_approval_lets_it_be_scheduled(ann, bob, large_mailing):
    approved = _approve(bob, large_mailing)

    response = _schedule(ann, large_mailing)

    assert approved.status_code == 200
    assert approved.json()["approved_by"] == bob.pk
    assert response.status_code == 200
    assert response.json()["state"] == "scheduled"


def test_the_person_who_built_it_cannot_approve_it(ann, large_mailing):
    response = _approve(ann, large_mailing)

    assert response.status_code == 400
    assert "you built this one" in response.json()["approval"][0]


def test_the_approver_cannot_schedule_it_alone(bob, large_mailing):
    _approve(bob, large_mailing)

    response = _schedule(bob, large_mailing)

    assert response.status_code == 400
    assert "you approved it yourself" in response.json()["approval"][0]


def test_a_change_to_its_content_after_approval_voids_the_approval(ann, bob, large_mailing):
    _approve(bob, large_mailing)
    template = large_mailing.template
    template.body = "Something else entirely"
    template.save()

    response = _schedule(ann, large_mailing)

    assert response.status_code == 400
    assert "changed since it was approved" in response.json()["approval"][0]


def test_a_change_to_its_audience_after_approval_voids_the_approval(ann, bob, large_mailing):
    _approve(bob, large_mailing)
    group = large_mailing.target_group
    group.rules = {"field": "city", "op": "eq", "value": "Riga"}
    group.save()
    MemberFactory.create_batch(3, city="Riga")

    response = _schedule(ann, large_mailing)

    assert response.status_code == 400
    assert "changed since it was approved" in response.json()["approval"][0]


def test_a_mailing_within_the_threshold_needs_no_approval(settings, ann):
    settings.ENGAGE_APPROVAL_THRESHOLD = 5
    MemberFactory.create_batch(3)

    response = _schedule(ann, MailingFactory(created_by=ann))

    assert response.status_code == 200


def test_without_a_threshold_no_mailing_needs_approval(settings, ann):
    settings.ENGAGE_APPROVAL_THRESHOLD = 0
    MemberFactory.create_batch(3)

    assert _schedule(ann, MailingFactory(created_by=ann)).status_code == 200


def test_an_analyst_cannot_approve(large_mailing):
    response = _approve(_staff("ada", ANALYST), large_mailing)

    assert response.status_code == 403


def test_the_admin_action_approves_and_the_admin_schedules_after_it(client, ann, bob,
                                                                   large_mailing):
    client.force_login(bob)
    client.post("/admin/communications/mailing/", {
        "action": "approve_selected", "_selected_action": [large_mailing.pk]})
    client.force_login(ann)
    client.post("/admin/communications/mailing/", {
        "action": "schedule_selected", "_selected_action": [large_mailing.pk]})

    large_mailing.refresh_from_db()
    assert large_mailing.approved_by == bob
    assert large_mailing.state == "scheduled"


def test_the_admin_refuses_to_schedule_an_unapproved_large_mailing(client, ann, large_mailing):
    client.force_login(ann)
    response = client.post("/admin/communications/mailing/", {
        "action": "schedule_selected", "_selected_action": [large_mailing.pk]}, follow=True)

    large_mailing.refresh_from_db()
    assert large_mailing.state == "draft"
    assert "a second person must approve it" in response.content.decode()
