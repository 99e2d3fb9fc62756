"""The offers' audience probe: whether one member is in a group, asked on the hot read path's
prepared cursor (server-side parameter binding, config.sql.prepared_cursor), answers as the
group's own query does for every field, operator and tree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.models import TargetGroup
from campaigns.selectors import target_groups_holding
from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions, trees
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    NOW,
    ids,
    segment_fixture,
)

pytestmark = pytest.mark.django_db

EVERY_FIELD_OP = [pair for pairs in FIELD_OPS.values() for pair in pairs]


def _probe(tree: object, member_id: int) -> bool:
    group = TargetGroup(pk=1, name="probe", rules=tree)
    return group.pk in target_groups_holding(member_id=member_id, target_groups=[group], now=NOW)


@pytest.mark.parametrize(("name", "op"), EVERY_FIELD_OP,
                         ids=[f"{name}-{op}" for name, op in EVERY_FIELD_OP])
def test_the_probe_answers_as_the_group_for_every_field_and_operator(segment, name, op):
    members = sorted(segment.world.members)

    @PROPERTY
    @given(condition=conditions(segment, name, op), member=st.sampled_from(members))
    def check(condition, member):
        assert _probe(condition, member) == (member in ids(condition))

    check()


def test_the_probe_answers_as_the_group_for_random_trees(segment):
    members = sorted(segment.world.members)

    @PROPERTY
    @given(tree=trees(segment), member=st.sampled_from(members))
    def check(tree, member):
        assert _probe(tree, member) == (member in ids(tree))

    check()


def test_the_probe_answers_for_several_groups_at_once(segment):
    members = sorted(segment.world.members)

    @PROPERTY
    @given(first=trees(segment, leaves=3), second=trees(segment, leaves=3),
           member=st.sampled_from(members))
    def check(first, second, member):
        groups = [TargetGroup(pk=1, name="a", rules=first), TargetGroup(pk=2, name="b",
                                                                         rules=second)]
        inside = target_groups_holding(member_id=member, target_groups=groups, now=NOW)
        assert inside == {pk for pk, tree in ((1, first), (2, second))
                          if member in ids(tree)}

    check()
