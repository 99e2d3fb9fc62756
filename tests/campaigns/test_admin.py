from __future__ import annotations

import json

import pytest
from django.urls import reverse

from campaigns.models import Campaign, TargetGroup
from tests.campaigns.factories import TargetGroupFactory
from tests.members.factories import MemberFactory, consenting_member


def _target_group_form(**fields):
    data = {"name": "Germans", "description": "", "rules": "[]"}
    data.update(fields)
    return data


@pytest.mark.django_db
def test_target_group_page_shows_live_audience_size(marketer_client):
    group = TargetGroupFactory(rules=[{"field": "language", "op": "eq", "value": "de"}])
    MemberFactory.create_batch(3, language="de")
    MemberFactory.create_batch(2, language="en")

    first = marketer_client.get(reverse("admin:campaigns_targetgroup_change", args=[group.pk]))
    MemberFactory(language="de")
    second = marketer_client.get(reverse("admin:campaigns_targetgroup_change", args=[group.pk]))

    assert first.context["adminform"].form.instance.pk == group.pk
    assert '<div class="readonly">3</div>' in first.content.decode()
    assert '<div class="readonly">4</div>' in second.content.decode()


@pytest.mark.django_db
def test_target_group_audience_counts_only_members_matching_every_rule(marketer_client):
    group = TargetGroupFactory(rules=[
        {"field": "language", "op": "eq", "value": "de"},
        {"field": "consent", "op": "has", "value": "email"},
    ])
    consenting_member(language="de")
    MemberFactory(language="de")
    consenting_member(language="en")

    response = marketer_client.get(reverse("admin:campaigns_targetgroup_change",
                                           args=[group.pk]))

    assert '<div class="readonly">1</div>' in response.content.decode()


@pytest.mark.django_db
def test_target_group_rules_are_saved_from_json(marketer_client):
    rules = [{"field": "tier", "op": "in", "value": ["gold", "silver"]}]

    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_add"), _target_group_form(rules=json.dumps(rules))
    )

    assert response.status_code == 302
    assert TargetGroup.objects.get(name="Germans").rules == rules


@pytest.mark.django_db
def test_target_group_with_invalid_rule_shows_a_form_error_naming_the_path(marketer_client):
    rules = [{"field": "language", "op": "eq", "value": "de"},
             {"field": "language", "op": "range", "value": ["a", "b"]}]

    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_add"), _target_group_form(rules=json.dumps(rules))
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["rules"]
    assert errors["rules"][0].startswith("rules[1].op: operator 'range' does not apply")
    assert not TargetGroup.objects.exists()


@pytest.mark.django_db
def test_target_group_with_rules_that_are_not_a_list_shows_a_form_error(marketer_client):
    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_add"),
        _target_group_form(rules=json.dumps({"field": "all"})),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["rules"] == ["must be a list of rules"]


@pytest.mark.django_db
def test_editing_rules_into_an_invalid_state_keeps_the_saved_rules(marketer_client):
    group = TargetGroupFactory(rules=[{"field": "all"}])

    response = marketer_client.post(
        reverse("admin:campaigns_targetgroup_change", args=[group.pk]),
        _target_group_form(name=group.name,
                           rules=json.dumps([{"field": "shoe_size", "op": "eq", "value": 42}])),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["rules"][0].startswith(
        "rules[0].field: unknown field 'shoe_size'"
    )
    group.refresh_from_db()
    assert group.rules == [{"field": "all"}]


@pytest.mark.django_db
def test_target_group_with_stored_invalid_rules_still_renders_and_says_why(marketer_client):
    group = TargetGroupFactory(rules=[{"field": "consent", "op": "eq", "value": "email"}])

    response = marketer_client.get(reverse("admin:campaigns_targetgroup_change",
                                           args=[group.pk]))

    assert response.status_code == 200
    assert "The rules are invalid: rules[0].op: consent takes the operator" in (
        response.content.decode().replace("&#x27;", "'")
    )


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
