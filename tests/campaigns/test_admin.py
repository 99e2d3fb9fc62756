from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaigns.models import Campaign, TargetGroup
from campaigns.rules import catalog
from loyalty.models import Store
from tests.campaigns.factories import CampaignFactory, TargetGroupFactory
from tests.members.factories import MemberFactory, consenting_member

FIELDS_URL = "admin:campaigns_targetgroup_rule_fields"
PREVIEW_URL = "admin:campaigns_targetgroup_rules_preview"

NESTED = {"and": [
    {"field": "language", "op": "eq", "value": "de"},
    {"or": [{"field": "city", "op": "eq", "value": "Riga"},
            {"field": "orders_count", "op": "range", "value": [2, None], "days": 90}]},
    {"not": {"field": "status", "op": "eq", "value": "blocked"}},
]}


def _target_group_form(**fields):
    data = {"name": "Germans", "description": "", "rules": "{}"}
    data.update(fields)
    return data


def _preview(client, rules, target_group_id=None):
    return client.post(reverse(PREVIEW_URL),
                       json.dumps({"rules": rules, "target_group_id": target_group_id}),
                       content_type="application/json")


def _staff(django_user_model, *permissions):
    user = django_user_model.objects.create_user(
        username="staff", password="a-long-test-password", is_staff=True)
    for codename in permissions:
        app_label, _, name = codename.partition(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=name))
    return user


# --- the change form ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_target_group_page_shows_live_audience_size(marketer_client):
    group = TargetGroupFactory(rules={"field": "language", "op": "eq", "value": "de"})
    MemberFactory.create_batch(3, language="de")
    MemberFactory.create_batch(2, language="en")

    first = marketer_client.get(reverse("admin:campaigns_targetgroup_change", args=[group.pk]))
    MemberFactory(language="de")
    second = marketer_client.get(reverse("admin:campaigns_targetgroup_change", args=[group.pk]))

    assert '<div class="readonly">3</div>' in first.content.decode()
    assert '<div class="readonly">4</div>' in second.content.decode()


@pytest.mark.django_db
def test_change_page_carries_the_rule_builder_with_its_urls(marketer_client):
    group = TargetGroupFactory(rules=NESTED)

    response = marketer_client.get(reverse("admin:campaigns_targetgroup_change",
                                           args=[group.pk]))

    page = response.content.decode()
    assert "campaigns/rule_builder.js" in page
    assert "campaigns/rule_builder.css" in page
    assert "data-rule-builder" in page
    config = response.context["rule_builder"]
    assert config["fieldsUrl"] == reverse(FIELDS_URL)
    assert config["previewUrl"] == reverse(PREVIEW_URL)
    assert config["targetGroupId"] == group.pk
    assert config["memberUrl"] == reverse("admin:members_member_change", args=["__id__"])
    assert '<script id="rule-builder-config" type="application/json">' in page


@pytest.mark.django_db
def test_add_page_rule_builder_has_no_target_group_yet(marketer_client):
    response = marketer_client.get(reverse("admin:campaigns_targetgroup_add"))

    assert response.context["rule_builder"]["targetGroupId"] is None


@pytest.mark.django_db
def test_nested_rule_tree_is_saved_from_the_form(marketer_client):
    response = marketer_client.post(reverse("admin:campaigns_targetgroup_add"),
                                    _target_group_form(rules=json.dumps(NESTED)))

    assert response.status_code == 302
    assert TargetGroup.objects.get(name="Germans").rules == NESTED


@pytest.mark.django_db
def test_a_root_list_of_conditions_is_saved_as_written(marketer_client):
    rules = [{"field": "language", "op": "eq", "value": "de"},
             {"field": "reachable", "op": "reachable", "value": "sms"}]

    marketer_client.post(reverse("admin:campaigns_targetgroup_add"),
                         _target_group_form(rules=json.dumps(rules)))

    assert TargetGroup.objects.get(name="Germans").rules == rules


@pytest.mark.django_db
def test_emptied_rules_are_saved_as_the_tree_of_every_member(marketer_client):
    response = marketer_client.post(reverse("admin:campaigns_targetgroup_add"),
                                    _target_group_form(rules=""))

    assert response.status_code == 302
    assert TargetGroup.objects.get(name="Germans").rules == {}


@pytest.mark.django_db
def test_invalid_tree_shows_a_form_error_naming_each_bad_path(marketer_client):
    rules = {"and": [{"field": "language", "op": "eq", "value": ""},
                     {"or": [{"field": "city", "op": "range", "value": ["a", "b"]}]}]}

    response = marketer_client.post(reverse("admin:campaigns_targetgroup_add"),
                                    _target_group_form(rules=json.dumps(rules)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["rules"]
    assert errors["rules"] == [
        "rules.and[0].value: must be non-empty text",
        "rules.and[1].or[0].op: operator 'range' does not apply to city; use one of eq, in, "
        "contains, starts_with, empty, not_empty",
    ]
    assert not TargetGroup.objects.exists()


@pytest.mark.django_db
def test_rules_that_are_not_json_show_a_form_error(marketer_client):
    response = marketer_client.post(reverse("admin:campaigns_targetgroup_add"),
                                    _target_group_form(rules="{and: ["))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["rules"] == ["Enter a valid JSON."]


@pytest.mark.django_db
def test_editing_rules_into_an_invalid_state_keeps_the_saved_rules(marketer_client):
    group = TargetGroupFactory(rules=NESTED)

    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_change", args=[group.pk]),
        _target_group_form(name=group.name, rules=json.dumps(
            {"and": [{"field": "shoe_size", "op": "eq", "value": 42}]})),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["rules"][0].startswith(
        "rules.and[0].field: unknown field 'shoe_size'"
    )
    group.refresh_from_db()
    assert group.rules == NESTED


@pytest.mark.django_db
def test_a_group_referring_to_itself_is_refused_as_a_cycle(marketer_client):
    group = TargetGroupFactory(name="Loop", rules={})

    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_change", args=[group.pk]),
        _target_group_form(name="Loop", rules=json.dumps(
            {"field": "target_group", "op": "member_of", "value": group.pk})),
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["rules"]
    assert error.startswith("rules.value: target groups refer to each other in a cycle")


@pytest.mark.django_db
def test_target_group_with_stored_invalid_rules_still_renders_and_says_why(marketer_client):
    group = TargetGroupFactory(rules=[{"field": "consent", "op": "has", "value": "email"}])

    response = marketer_client.get(reverse("admin:campaigns_targetgroup_change",
                                           args=[group.pk]))

    assert response.status_code == 200
    assert "The rules are invalid: rules[0].field: unknown field 'consent'" in (
        response.content.decode().replace("&#x27;", "'")
    )


# --- the JSON views --------------------------------------------------------------------------

@pytest.mark.django_db
def test_fields_view_lists_the_rule_catalog(marketer_client):
    response = marketer_client.get(reverse(FIELDS_URL))

    assert response.status_code == 200
    fields = response.json()["fields"]
    assert fields == json.loads(json.dumps(catalog()))
    assert {"location", "reachable", "opened", "target_group"} <= {f["key"] for f in fields}


@pytest.mark.django_db
def test_fields_view_suggests_groups_lists_stores_campaigns_by_name(marketer_client):
    group = TargetGroupFactory(name="Germans")
    campaign = CampaignFactory(name="Spring")
    Store.objects.create(code="old-town", name="Old Town", latitude=56.95, longitude=24.1)

    references = marketer_client.get(reverse(FIELDS_URL)).json()["references"]

    assert references["target_group"] == [{"value": group.pk, "label": "Germans"}]
    assert references["campaign"] == [{"value": campaign.pk, "label": "Spring"}]
    assert references["store"] == [{"value": "old-town", "label": "Old Town"}]
    assert references["mailing"] == []
    assert references["static_list"] == []


@pytest.mark.django_db
def test_preview_counts_the_audience_reachable_per_channel_and_a_sample(marketer_client):
    sms = [consenting_member(channel="sms", language="de") for _ in range(2)]
    email = consenting_member(channel="email", language="de")
    MemberFactory(language="en")

    response = _preview(marketer_client, {"and": [
        {"field": "language", "op": "eq", "value": "de"}]})

    assert response.status_code == 200
    body = response.json()
    assert body["size"] == 3
    assert body["estimated"] is False
    assert body["reachable"] == {"sms": 2, "email": 1, "push": 0, "viber": 0, "social": 0}
    assert [row["id"] for row in body["sample"]] == sorted([m.pk for m in [*sms, email]])
    assert body["sample"][0]["email"] == sms[0].email


@pytest.mark.django_db
def test_preview_saves_nothing(marketer_client):
    _preview(marketer_client, NESTED)

    assert not TargetGroup.objects.exists()


@pytest.mark.django_db
def test_preview_of_an_invalid_tree_answers_400_with_errors_by_path(marketer_client):
    response = _preview(marketer_client, {"and": [
        {"field": "orders_total", "op": "eq", "value": "lots"},
        {"or": []},
    ]})

    assert response.status_code == 400
    assert response.json() == {"errors": {
        "rules.and[0].value": ["must be a number"],
        "rules.and[1].or": ["must be a non-empty list of rules"],
    }}


@pytest.mark.django_db
def test_preview_refuses_a_reference_back_to_the_group_being_edited(marketer_client):
    group = TargetGroupFactory(name="Loop")

    response = _preview(marketer_client, {"field": "target_group", "op": "member_of",
                                          "value": group.pk}, target_group_id=group.pk)

    assert response.status_code == 400
    [message] = response.json()["errors"]["rules.value"]
    assert message.startswith("target groups refer to each other in a cycle")


@pytest.mark.django_db
def test_preview_of_a_body_that_is_not_json_answers_400(marketer_client):
    response = marketer_client.post(reverse(PREVIEW_URL), "{rules:",
                                    content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["request"]


@pytest.mark.django_db
def test_preview_without_rules_in_the_body_answers_400(marketer_client):
    response = marketer_client.post(reverse(PREVIEW_URL), json.dumps({"and": []}),
                                    content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["request"]


@pytest.mark.django_db
def test_preview_with_a_target_group_id_that_is_not_an_id_answers_400(marketer_client):
    response = _preview(marketer_client, {}, target_group_id="7")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["target_group_id"]


@pytest.mark.django_db
def test_preview_answers_only_post(marketer_client):
    assert marketer_client.get(reverse(PREVIEW_URL)).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("url", [FIELDS_URL, PREVIEW_URL])
def test_rule_builder_views_send_anonymous_users_to_the_login(client, url):
    response = client.post(reverse(url), "{}", content_type="application/json")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [FIELDS_URL, PREVIEW_URL])
def test_rule_builder_views_refuse_users_who_are_not_staff(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user(
        username="member", password="a-long-test-password"))

    response = client.get(reverse(url))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_staff_who_may_not_see_target_groups_cannot_preview(client, django_user_model):
    client.force_login(_staff(django_user_model))

    assert client.get(reverse(FIELDS_URL)).status_code == 403
    assert _preview(client, {}).status_code == 403


@pytest.mark.django_db
def test_preview_shows_no_sample_to_staff_who_may_not_see_members(client, django_user_model):
    client.force_login(_staff(django_user_model, "campaigns.view_targetgroup"))
    MemberFactory.create_batch(2)

    body = _preview(client, {}).json()

    assert body["size"] == 2
    assert body["sample"] == []


@pytest.mark.django_db
def test_preview_shows_the_sample_to_staff_who_may_see_members(client, django_user_model):
    client.force_login(_staff(django_user_model, "campaigns.view_targetgroup",
                              "members.view_member"))
    member = MemberFactory()

    body = _preview(client, {}).json()

    assert [row["id"] for row in body["sample"]] == [member.pk]


# --- campaigns -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_campaign_ending_before_it_starts_is_rejected_on_save(marketer_client):
    response = marketer_client.post(
        reverse("admin:campaigns_campaign_add"),
        {"name": "Spring", "starts_on": "2025-04-01", "ends_on": "2025-03-01",
         "currency": "EUR"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Campaign.objects.exists()
