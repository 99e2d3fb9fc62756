from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import StaticList
from campaigns.rules import rules_members
from campaigns.services import static_list_create, target_group_freeze
from tests.campaigns.factories import TargetGroupFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_freezing_a_group_keeps_its_members_when_the_rules_would_no_longer_match():
    # given a group of German speakers, frozen
    german = MemberFactory(language="de")
    MemberFactory(language="en")
    group = TargetGroupFactory(rules={"field": "language", "op": "eq", "value": "de"})
    frozen = target_group_freeze(target_group=group, name="Germans in spring")
    # when the member changes language
    german.language = "fr"
    german.save()
    # then the list still holds them, and says when it was taken
    listed = rules_members({"field": "static_list", "op": "member_of", "value": frozen.pk})
    assert list(listed.values_list("pk", flat=True)) == [german.pk]
    assert frozen.size == 1
    assert frozen.frozen_from == group
    assert frozen.taken_at is not None


def test_freezing_twice_under_one_name_is_refused():
    group = TargetGroupFactory()
    target_group_freeze(target_group=group, name="Once")

    with pytest.raises(ValidationError) as error:
        target_group_freeze(target_group=group, name="Once")

    assert "name" in error.value.message_dict


def test_list_from_external_ids_refuses_unknown_ones_and_writes_nothing():
    MemberFactory(external_id="A-1")

    with pytest.raises(ValidationError) as error:
        static_list_create(name="VIPs", external_ids=["A-1", "NOPE-1", "NOPE-2"])

    assert error.value.message_dict["external_ids"] == ["2 unknown: NOPE-1, NOPE-2"]
    assert not StaticList.objects.exists()


def test_api_creates_a_list_from_a_csv_of_external_ids(marketer_client):
    first = MemberFactory(external_id="A-1")
    second = MemberFactory(external_id="A-2")
    MemberFactory(external_id="A-3")
    upload = b"external_id,note\nA-1,x\n\nA-2,y\n"

    response = marketer_client.post("/api/v1/static-lists/", {
        "name": "Uploaded", "file": SimpleUploadedFile("ids.csv", upload, "text/csv")})

    assert response.status_code == 201, response.json()
    listed = StaticList.objects.get(pk=response.json()["id"]).entries.values_list(
        "member_id", flat=True)
    assert sorted(listed) == [first.pk, second.pk]


def test_api_creates_a_list_from_member_ids(marketer_client):
    member = MemberFactory()

    response = marketer_client.post("/api/v1/static-lists/",
                                    {"name": "By id", "member_ids": [member.pk]},
                                    content_type="application/json")

    assert response.status_code == 201
    assert response.json()["size"] == 1


def test_api_freeze_answers_with_the_new_list(marketer_client):
    MemberFactory(language="de")
    group = TargetGroupFactory(rules={"field": "language", "op": "eq", "value": "de"})

    response = marketer_client.post(f"/api/v1/target-groups/{group.pk}/freeze/", {},
                                    content_type="application/json")

    assert response.status_code == 201
    assert response.json()["size"] == 1
    assert response.json()["source"] == "frozen"
