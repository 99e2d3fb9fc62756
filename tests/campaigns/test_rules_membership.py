"""Membership: of another target group (compiled in) or of a static list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.factories import (
    StaticListFactory,
    StaticListMemberFactory,
    TargetGroupFactory,
)
from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["membership"])
@PROPERTY
@given(data=st.data())
def test_membership_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["membership"])
@PROPERTY
@given(data=st.data())
def test_negated_membership_condition_selects_every_other_member(segment, name, op, data):
    assert_like_reference({"not": data.draw(conditions(segment, name, op))}, segment)


def test_member_of_a_target_group_follows_its_rules_as_they_are_now(segment):
    group = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Valmiera"})
    valmiera = MemberFactory(city="Valmiera")

    assert valmiera.pk in ids({"field": "target_group", "op": "member_of", "value": group.pk})


def test_references_nest_through_several_groups(segment):
    inner = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Cēsis"})
    middle = TargetGroupFactory(rules={"not": {"field": "target_group", "op": "member_of",
                                               "value": inner.pk}})
    outer = TargetGroupFactory(rules=[{"field": "target_group", "op": "not_member_of",
                                       "value": middle.pk}])
    cesis = MemberFactory(city="Cēsis")
    other = MemberFactory(city="Talsi")

    selected = ids({"field": "target_group", "op": "member_of", "value": outer.pk})

    assert {cesis.pk, other.pk} & selected == {cesis.pk}


def test_not_member_of_an_empty_static_list_is_every_member(segment):
    empty = StaticListFactory()

    assert ids({"field": "static_list", "op": "not_member_of", "value": empty.pk}) == ids({})


def test_member_of_a_static_list_is_exactly_its_entries(segment):
    entry = StaticListMemberFactory()
    MemberFactory()

    assert ids({"field": "static_list", "op": "member_of",
                "value": entry.static_list_id}) == {entry.member_id}
