"""The roles' groups: created by migrate, kept exact by roles_sync."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from config.roles import ADMINISTRATOR, ANALYST, MARKETER, ROLES, SUPPORT
from tests.roles_support import staff_user

pytestmark = pytest.mark.django_db


def _held(role: str) -> set[str]:
    return {f"{app_label}.{codename}" for app_label, codename in
            Group.objects.get(name=role).permissions.values_list("content_type__app_label",
                                                                 "codename")}


def _roles_sync() -> str:
    out = StringIO()
    call_command("roles_sync", stdout=out)
    return out.getvalue()


def test_migrate_creates_each_role_with_exactly_its_permissions():
    for role, perms in ROLES.items():
        assert _held(role) == set(perms), role


def test_roles_sync_twice_changes_nothing_the_second_time():
    _roles_sync()

    assert _roles_sync() == "Roles already in sync.\n"


def test_roles_sync_restores_a_removed_permission_and_drops_a_foreign_one():
    # given
    group = Group.objects.get(name=ANALYST)
    group.permissions.remove(Permission.objects.get(codename="view_mailing"))
    group.permissions.add(Permission.objects.get(codename="view_member"))

    # when
    printed = _roles_sync()

    # then
    assert printed == "analyst: +communications.view_mailing, -members.view_member\n"
    assert _held(ANALYST) == set(ROLES[ANALYST])


def test_roles_sync_recreates_a_deleted_role():
    Group.objects.filter(name=SUPPORT).delete()

    printed = _roles_sync()

    assert printed.startswith("support: created, +")
    assert _held(SUPPORT) == set(ROLES[SUPPORT])


def test_analyst_may_read_mailings_but_not_members_personal_data():
    analyst = staff_user(ANALYST)

    assert analyst.has_perm("communications.view_mailing")
    assert not any(analyst.has_perm(perm) for perm in (
        "members.view_member", "members.view_device", "members.view_consent",
        "members.view_feedbackthread", "communications.view_message"))


def test_only_the_administrator_manages_api_keys_webhooks_and_users():
    for role in (MARKETER, ANALYST, SUPPORT):
        user = staff_user(role)
        assert not any(user.has_perm(perm) for perm in (
            "loyalty.view_apikey", "loyalty.view_webhooksubscription", "auth.view_user",
            "communications.change_gateway")), role
    administrator = staff_user(ADMINISTRATOR)
    assert all(administrator.has_perm(perm) for perm in (
        "loyalty.add_apikey", "loyalty.change_webhooksubscription", "auth.change_user",
        "communications.change_gateway", "auditlog.view_logentry"))
