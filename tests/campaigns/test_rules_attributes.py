"""Custom attributes (`attribute.<key>`): each declared type, every operator of its kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    ATTRIBUTES,
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.members.factories import CustomAttributeFactory, MemberFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["attributes"])
@PROPERTY
@given(data=st.data())
def test_attribute_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize("key", sorted(ATTRIBUTES))
@PROPERTY
@given(data=st.data())
def test_negated_attribute_condition_includes_members_without_the_key(segment, key, data):
    name, op = data.draw(st.sampled_from(
        [pair for pair in FIELD_OPS["attributes"] if pair[0] == f"attribute.{key}"]))
    condition = data.draw(conditions(segment, name, op))

    assert_like_reference({"not": condition}, segment)


def test_missing_key_null_and_empty_text_are_all_empty(segment):
    missing = MemberFactory(custom_attributes={})
    null = MemberFactory(custom_attributes={"nickname": None})
    blank = MemberFactory(custom_attributes={"nickname": ""})
    named = MemberFactory(custom_attributes={"nickname": "Bee"})

    selected = ids({"field": "attribute.nickname", "op": "empty"})

    assert {missing.pk, null.pk, blank.pk, named.pk} & selected == {missing.pk, null.pk,
                                                                     blank.pk}


def test_false_is_a_value_and_not_empty(segment):
    no = MemberFactory(custom_attributes={"vip": False})
    null = MemberFactory(custom_attributes={"vip": None})

    selected = ids({"field": "attribute.vip", "op": "not_empty"})

    assert {no.pk, null.pk} & selected == {no.pk}


def test_not_equals_includes_members_without_the_attribute(segment):
    missing = MemberFactory(custom_attributes={})
    other = MemberFactory(custom_attributes={"flavour": "tea"})
    latte = MemberFactory(custom_attributes={"flavour": "latte"})

    selected = ids({"not": {"field": "attribute.flavour", "op": "eq", "value": "latte"}})

    assert {missing.pk, other.pk, latte.pk} & selected == {missing.pk, other.pk}


def test_number_equals_a_decimal_fraction_exactly(segment):
    tenth = MemberFactory(custom_attributes={"score": 0.1})
    near = MemberFactory(custom_attributes={"score": 0.10000001})

    selected = ids({"field": "attribute.score", "op": "eq", "value": 0.1})

    assert {tenth.pk, near.pk} & selected == {tenth.pk}


def test_date_attribute_range_compares_dates_not_text(segment):
    inside = MemberFactory(custom_attributes={"anniversary": "2024-02-29"})
    outside = MemberFactory(custom_attributes={"anniversary": "2024-10-01"})

    selected = ids({"field": "attribute.anniversary", "op": "range",
                    "value": ["2024-02-01", "2024-09-30"]})

    assert {inside.pk, outside.pk} & selected == {inside.pk}


@pytest.mark.parametrize("key", ["in", "exact", "contains", "lt"])
def test_an_attribute_named_like_a_query_lookup_is_still_its_key(segment, key):
    CustomAttributeFactory(key=key, type="number")
    three = MemberFactory(custom_attributes={key: 3})
    zero = MemberFactory(custom_attributes={key: 0})

    selected = ids({"field": f"attribute.{key}", "op": "range", "value": [1, None]})

    assert {three.pk, zero.pk} & selected == {three.pk}
