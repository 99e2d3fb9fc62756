"""The tree: AND / OR / NOT groups nested over conditions of every family."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given

from campaigns.rules import catalog
from campaigns.selectors import target_group_size
from tests.campaigns.factories import TargetGroupFactory
from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, TREES, nodes, trees
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_random_trees_select_the_members_the_document_says(segment):
    @TREES
    @given(tree=trees(segment))
    def check(tree):
        assert_like_reference(tree, segment)

    check()


def test_not_not_selects_the_same_members_as_the_tree(segment):
    @PROPERTY
    @given(tree=nodes(segment, leaves=4))
    def check(tree):
        assert ids({"not": {"not": tree}}) == ids(tree)

    check()


def test_a_tree_and_its_negation_split_the_members(segment):
    @PROPERTY
    @given(tree=nodes(segment, leaves=4))
    def check(tree):
        selected, rest = ids(tree), ids({"not": tree})

        assert selected & rest == set()
        assert selected | rest == set(segment.world.members)

    check()


@pytest.mark.parametrize("tree", [{}, []])
def test_an_empty_tree_selects_every_member(segment, tree):
    assert ids(tree) == set(segment.world.members)


def test_a_root_list_is_and(segment):
    riga = {"field": "city", "op": "eq", "value": "Riga"}
    female = {"field": "gender", "op": "eq", "value": "female"}

    assert ids([riga, female]) == ids({"and": [riga, female]}) == ids(riga) & ids(female)


def test_the_catalog_lists_exactly_the_fields_and_operators_of_the_document(segment):
    listed = {(field["key"], op["key"]) for field in catalog() for op in field["ops"]}

    assert listed == {pair for pairs in FIELD_OPS.values() for pair in pairs}


def test_target_group_size_is_one_count_query(segment):
    for _ in range(4):
        MemberFactory(city="Ventspils")
    group = TargetGroupFactory(rules=[{"field": "city", "op": "eq", "value": "Ventspils"}])

    with CaptureQueriesContext(connection) as queries:
        assert target_group_size(target_group=group) == 4

    # Besides the id range that decides whether to count in parts, one query counts.
    reads = [q["sql"] for q in queries.captured_queries
             if "members_member" in q["sql"] and "MIN(" not in q["sql"]]
    assert len(reads) == 1 and reads[0].startswith("SELECT COUNT(*)")
