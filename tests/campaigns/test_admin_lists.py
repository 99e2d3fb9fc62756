from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import StaticList, TargetGroup
from tests.campaigns.factories import TargetGroupFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

GROUPS = "/admin/campaigns/targetgroup/"
LISTS = "/admin/campaigns/staticlist/"
GERMAN = {"field": "language", "op": "eq", "value": "de"}


def _act(client, action: str, *groups: TargetGroup):
    return client.post(GROUPS, {"action": action,
                                "_selected_action": [group.pk for group in groups]})


def test_freeze_action_writes_a_static_list_of_the_current_members(marketer_client):
    MemberFactory(language="de")
    group = TargetGroupFactory(rules=GERMAN)

    response = _act(marketer_client, "freeze", group)

    assert response.status_code == 302
    frozen = StaticList.objects.get(frozen_from=group)
    assert frozen.size == 1


def test_export_action_streams_one_groups_members(marketer_client):
    MemberFactory(language="de", external_id="DE-9")
    group = TargetGroupFactory(rules=GERMAN)

    response = _act(marketer_client, "export_members", group)

    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[1].startswith("DE-9,")


def test_watch_action_marks_the_group_watched(marketer_client):
    group = TargetGroupFactory(rules=GERMAN)

    _act(marketer_client, "watch", group)

    group.refresh_from_db()
    assert group.is_watched and group.watched_since is not None


def test_uploading_a_csv_of_external_ids_creates_a_static_list(marketer_client):
    member = MemberFactory(external_id="X-1")
    upload = SimpleUploadedFile("ids.csv", b"external_id\nX-1\n", "text/csv")

    response = marketer_client.post(f"{LISTS}add/", {"name": "Fair visitors",
                                                     "description": "", "file": upload})

    assert response.status_code == 302
    assert list(StaticList.objects.get(name="Fair visitors").entries
                .values_list("member_id", flat=True)) == [member.pk]


def test_upload_with_unknown_ids_shows_them_and_saves_nothing(marketer_client):
    upload = SimpleUploadedFile("ids.csv", b"external_id\nNOPE-1\n", "text/csv")

    response = marketer_client.post(f"{LISTS}add/", {"name": "Bad", "description": "",
                                                     "file": upload})

    assert response.status_code == 200
    assert "1 unknown: NOPE-1" in response.content.decode()
    assert not StaticList.objects.exists()
