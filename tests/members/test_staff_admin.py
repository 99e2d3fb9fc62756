"""The admin's user screen: an administrator gives roles (groups) but only a superuser makes
superusers or grants single permissions."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth.models import Group, User

from config.roles import ADMINISTRATOR, MARKETER
from tests.roles_support import admin_as  # noqa: F401

pytestmark = pytest.mark.django_db


def _change_form_data(client, user: User) -> dict:
    """What the user's change form posts back unchanged."""
    page = client.get(f"/admin/auth/user/{user.pk}/change/")
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(value, datetime):  # the admin's split date and time widgets
            data[f"{name}_0"] = value.date().isoformat()
            data[f"{name}_1"] = value.time().strftime("%H:%M:%S")
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list | tuple):
            data[name] = [getattr(v, "pk", v) for v in value]
        elif value is not None:
            data[name] = value
    data.pop("password", None)
    return data


@pytest.fixture
def bob():
    return User.objects.create_user(username="bob", password="a-long-test-password",
                                    is_staff=True)


def test_an_administrator_gives_a_staff_user_a_role(admin_as, bob):  # noqa: F811
    client = admin_as(ADMINISTRATOR)
    data = _change_form_data(client, bob)
    data["groups"] = [Group.objects.get(name=MARKETER).pk]

    response = client.post(f"/admin/auth/user/{bob.pk}/change/", data)

    assert response.status_code == 302
    assert list(bob.groups.values_list("name", flat=True)) == [MARKETER]


def test_an_administrator_cannot_make_a_superuser(admin_as, bob):  # noqa: F811
    client = admin_as(ADMINISTRATOR)
    data = {**_change_form_data(client, bob), "is_superuser": "on"}

    client.post(f"/admin/auth/user/{bob.pk}/change/", data)

    bob.refresh_from_db()
    assert not bob.is_superuser


def test_a_superuser_makes_a_superuser(marketer_client, bob):
    data = {**_change_form_data(marketer_client, bob), "is_superuser": "on"}

    response = marketer_client.post(f"/admin/auth/user/{bob.pk}/change/", data)

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.is_superuser
