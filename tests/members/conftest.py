"""Fixtures of the members tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission


@pytest.fixture
def feedback_storage(settings, tmp_path) -> Path:
    """Attachments of this test in a folder of its own (the `feedback` storage)."""
    location = tmp_path / "feedback"
    settings.STORAGES = {**settings.STORAGES, "feedback": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)}}}
    return location


@pytest.fixture
def support_agent(django_user_model):
    """A staff user whose job is members' feedback: may see and answer threads, nothing else."""
    agent = django_user_model.objects.create_user(username="agent", password="a-long-password",
                                                  is_staff=True)
    agent.user_permissions.set(Permission.objects.filter(
        content_type__app_label="members",
        codename__in=["view_feedbackthread", "change_feedbackthread"]))
    return agent
