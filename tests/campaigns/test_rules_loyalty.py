"""Loyalty fields: the member's tier and since when."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    NOW,
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.loyalty.factories import LoyaltyAccountFactory, TierFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["loyalty"])
@PROPERTY
@given(data=st.data())
def test_loyalty_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize("name", ["tier", "tier_since"])
@PROPERTY
@given(data=st.data())
def test_negated_loyalty_condition_includes_members_without_an_account(segment, name, data):
    op = data.draw(st.sampled_from([op for field, op in FIELD_OPS["loyalty"] if field == name]))

    assert_like_reference({"not": data.draw(conditions(segment, name, op))}, segment)


def test_tier_is_empty_without_an_account_or_without_a_tier(segment):
    no_account = MemberFactory()
    no_tier = LoyaltyAccountFactory(tier=None).member
    gold = LoyaltyAccountFactory(tier=TierFactory(code="gold")).member

    selected = ids({"field": "tier", "op": "empty"})

    assert {no_account.pk, no_tier.pk, gold.pk} & selected == {no_account.pk, no_tier.pk}


def test_tier_changed_in_the_last_30_days(segment):
    recent = LoyaltyAccountFactory(tier_since=NOW - dt.timedelta(days=29)).member
    older = LoyaltyAccountFactory(tier_since=NOW - dt.timedelta(days=31)).member

    selected = ids({"field": "tier_since", "op": "in_last_days", "value": 30})

    assert {recent.pk, older.pk} & selected == {recent.pk}
