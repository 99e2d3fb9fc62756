"""What the role tests share: a staff user per role (config.roles), signed in to the API or
the admin."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient


def staff_user(role: str | None) -> User:
    """A staff user in the role's group; None: staff with no role at all."""
    user = User.objects.create_user(username=f"staff-{role or 'none'}",
                                    password="a-long-test-password", is_staff=True)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def api_as(db) -> Callable[[str | None], APIClient]:
    def make(role: str | None) -> APIClient:
        client = APIClient()
        client.force_authenticate(staff_user(role))
        return client
    return make


@pytest.fixture
def admin_as(db) -> Callable[[str | None], Client]:
    def make(role: str | None) -> Client:
        client = Client()
        client.force_login(staff_user(role))
        return client
    return make
