from __future__ import annotations

import pytest

from campaigns.models import TargetGroup
from tests.campaigns.factories import TargetGroupFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/target-groups/"
GERMAN = {"field": "language", "op": "eq", "value": "de"}


def test_marketer_creates_a_target_group_with_a_nested_tree(marketer_client):
    tree = {"and": [GERMAN, {"not": {"field": "city", "op": "eq", "value": "Berlin"}}]}

    response = marketer_client.post(URL, {"name": "Germans outside Berlin", "rules": tree},
                                    content_type="application/json")

    assert response.status_code == 201, response.json()
    assert TargetGroup.objects.get(pk=response.json()["id"]).rules == tree


def test_invalid_tree_is_refused_with_the_path_of_each_error(marketer_client):
    tree = {"or": [GERMAN, {"field": "shoe_size", "op": "eq", "value": 42},
                   {"field": "orders_count", "op": "range", "value": ["two", None]}]}

    response = marketer_client.post(URL, {"name": "Broken", "rules": tree},
                                    content_type="application/json")

    assert response.status_code == 400
    errors = response.json()["rules"]
    assert any(error.startswith("rules.or[1].field: unknown field 'shoe_size'")
               for error in errors)
    assert any(error.startswith("rules.or[2].value:") for error in errors)
    assert not TargetGroup.objects.filter(name="Broken").exists()


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data"])
def test_a_null_tree_is_refused_as_a_field_error(marketer_client, content_type):
    if content_type == "application/json":
        response = marketer_client.post(URL, {"name": "Nothing", "rules": None},
                                        content_type=content_type)
    else:
        response = marketer_client.post(URL, {"name": "Nothing", "rules": "null"})

    assert response.status_code == 400
    assert "rules" in response.json()
    assert not TargetGroup.objects.filter(name="Nothing").exists()


def test_group_that_refers_back_to_itself_is_refused_as_a_cycle(marketer_client):
    outer = TargetGroupFactory(name="Outer", rules=GERMAN)
    inner = TargetGroupFactory(name="Inner", rules={
        "field": "target_group", "op": "member_of", "value": outer.pk})

    response = marketer_client.patch(
        f"{URL}{outer.pk}/", {"rules": {"field": "target_group", "op": "member_of",
                                        "value": inner.pk}},
        content_type="application/json")

    assert response.status_code == 400
    assert "cycle" in response.json()["rules"][0]
    outer.refresh_from_db()
    assert outer.rules == GERMAN


def test_preview_counts_a_tree_without_saving_it(marketer_client):
    consenting_member(language="de", channel="sms")
    MemberFactory(language="de")
    MemberFactory(language="en")

    response = marketer_client.post(f"{URL}preview/", {"rules": GERMAN, "sample_size": 1},
                                    content_type="application/json")

    assert response.status_code == 200
    body = response.json()
    assert body["size"] == 2
    assert body["estimated"] is False
    assert body["reachable"] == {"sms": 1, "email": 0, "push": 0, "viber": 0, "social": 0}
    assert len(body["sample"]) == 1
    assert not TargetGroup.objects.exists()


def test_preview_of_a_bad_tree_answers_400_naming_the_path(marketer_client):
    response = marketer_client.post(
        f"{URL}preview/", {"rules": {"and": [{"field": "age", "op": "range", "value": [30, 20]}]}},
        content_type="application/json")

    assert response.status_code == 400
    assert response.json()["rules"] == ["rules.and[0].value: low must not be above high"]


def test_size_of_a_saved_group(marketer_client):
    MemberFactory(language="de")
    group = TargetGroupFactory(rules=GERMAN)

    response = marketer_client.get(f"{URL}{group.pk}/size/")

    assert response.status_code == 200
    assert response.json()["size"] == 1


def test_fields_lists_every_family_for_the_rule_builder(marketer_client):
    response = marketer_client.get(f"{URL}fields/")

    families = {field["family"] for field in response.json()}
    assert {"Profile", "Loyalty", "Purchases", "Location", "Reachability", "Engagement",
            "Membership"} <= families


def test_export_streams_the_group_members_as_csv(marketer_client):
    MemberFactory(language="de", external_id="DE-1")
    MemberFactory(language="en", external_id="EN-1")
    group = TargetGroupFactory(rules=GERMAN)

    response = marketer_client.get(f"{URL}{group.pk}/export/")

    assert response.status_code == 200
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("external_id,")
    assert [line.split(",")[0] for line in lines[1:]] == ["DE-1"]


def test_target_groups_are_for_staff_only(client):
    MemberFactory()

    assert client.get(URL).status_code in (401, 403)
    assert client.post(f"{URL}preview/", {"rules": {}},
                       content_type="application/json").status_code in (401, 403)


def test_not_member_of_a_group_of_everyone_selects_nobody(marketer_client):
    MemberFactory()
    everyone = TargetGroupFactory(rules={})

    response = marketer_client.post(f"{URL}preview/", {"rules": {
        "field": "target_group", "op": "not_member_of", "value": everyone.pk}},
        content_type="application/json")

    assert response.json()["size"] == 0
