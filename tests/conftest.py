from __future__ import annotations

import pytest


@pytest.fixture
def marketer(django_user_model):
    return django_user_model.objects.create_user(
        username="marketer", password="a-long-test-password", is_staff=True, is_superuser=True
    )


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client
