from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.rules import rules_compile, rules_members
from campaigns.selectors import target_group_size
from members.models import Member
from tests.campaigns.factories import TargetGroupFactory
from tests.loyalty.factories import LoyaltyAccountFactory, TierFactory
from tests.members.factories import ConsentFactory, MemberFactory, SubscriptionCategoryFactory

pytestmark = pytest.mark.django_db


def _ids(rules) -> set[int]:
    return set(rules_members(rules).values_list("pk", flat=True))


def test_empty_rule_list_selects_every_member():
    members = {MemberFactory().pk for _ in range(3)}

    assert _ids([]) == members


def test_all_rule_selects_every_member():
    members = {MemberFactory().pk for _ in range(2)}

    assert _ids([{"field": "all"}]) == members


def test_field_equals_selects_matching_members():
    german = MemberFactory(language="de")
    MemberFactory(language="en")

    assert _ids([{"field": "language", "op": "eq", "value": "de"}]) == {german.pk}


def test_field_in_selects_members_with_any_of_the_values():
    german = MemberFactory(language="de")
    french = MemberFactory(language="fr")
    MemberFactory(language="en")

    assert _ids([{"field": "language", "op": "in", "value": ["de", "fr"]}]) == {
        german.pk, french.pk
    }


def test_date_range_with_an_open_end_selects_members_after_the_start():
    old = MemberFactory()
    new = MemberFactory()
    Member.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))

    since = (timezone.now() - timedelta(days=30)).date().isoformat()
    assert _ids([{"field": "created_at", "op": "range", "value": [since, None]}]) == {new.pk}


def test_tier_rule_selects_members_in_those_tiers():
    gold = LoyaltyAccountFactory(tier=TierFactory(code="gold")).member
    LoyaltyAccountFactory(tier=TierFactory(code="bronze"))
    MemberFactory()

    assert _ids([{"field": "tier", "op": "in", "value": ["gold"]}]) == {gold.pk}


def test_consent_rule_selects_members_with_granted_marketing_consent_on_the_channel():
    granted = ConsentFactory(channel="sms").member
    ConsentFactory(channel="sms", state="withdrawn")
    ConsentFactory(channel="email")

    assert _ids([{"field": "consent", "op": "has", "value": "sms"}]) == {granted.pk}


def test_consent_rule_does_not_count_a_subscription_category_grant_alone():
    member = MemberFactory()
    ConsentFactory(member=member, channel="email", category=SubscriptionCategoryFactory())

    assert _ids([{"field": "consent", "op": "has", "value": "email"}]) == set()


def test_rules_are_combined_with_and():
    match = ConsentFactory(member=MemberFactory(language="de"), channel="email").member
    ConsentFactory(member=MemberFactory(language="en"), channel="email")
    MemberFactory(language="de")

    rules = [{"field": "language", "op": "eq", "value": "de"},
             {"field": "consent", "op": "has", "value": "email"}]
    assert _ids(rules) == {match.pk}


def test_target_group_size_is_one_count_query(django_assert_num_queries):
    for _ in range(4):
        MemberFactory(language="de")
    group = TargetGroupFactory(rules=[{"field": "language", "op": "eq", "value": "de"}])

    with django_assert_num_queries(1):
        assert target_group_size(target_group=group) == 4


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ([{"field": "shoe_size", "op": "eq", "value": 42}], "rules[0].field"),
        ([{"field": "all"}, {"field": "language", "op": "like", "value": "d%"}], "rules[1].op"),
        ([{"field": "language", "op": "in", "value": []}], "rules[0].value"),
        ([{"field": "created_at", "op": "range", "value": ["yesterday", None]}],
         "rules[0].value"),
        ([{"field": "consent", "op": "has", "value": "pigeon"}], "rules[0].value"),
        (["language=de"], "rules[0]"),
        ({"field": "all"}, "rules"),
    ],
)
def test_invalid_rules_are_rejected_naming_the_path(rules, path):
    with pytest.raises(ValidationError) as error:
        rules_compile(rules)

    assert path in error.value.message_dict


def test_target_group_with_invalid_rules_fails_model_validation():
    group = TargetGroupFactory.build(rules=[{"field": "tier", "op": "range", "value": [1, 2]}])

    with pytest.raises(ValidationError) as error:
        group.full_clean()

    assert error.value.message_dict["rules"][0].startswith("rules[0].op: ")
