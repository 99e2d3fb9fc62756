"""Purchase fields: counts, sums and averages over a window, the last purchase, products."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

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
from tests.loyalty.factories import OrderFactory, OrderLineFactory, ProductFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

FIELDS = sorted({name for name, _ in FIELD_OPS["purchases"]})


def _order(member, *, days_ago: float, total: str = "10.00", product=None):
    order = OrderFactory(member=member, placed_at=NOW - dt.timedelta(days=days_ago),
                         total=Decimal(total))
    if product is not None:
        OrderLineFactory(order=order, product=product)
    return order


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["purchases"])
@PROPERTY
@given(data=st.data())
def test_purchase_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize("name", FIELDS)
@PROPERTY
@given(data=st.data())
def test_negated_purchase_condition_includes_members_who_never_bought(segment, name, data):
    op = data.draw(st.sampled_from([op for field, op in FIELD_OPS["purchases"]
                                    if field == name]))

    assert_like_reference({"not": data.draw(conditions(segment, name, op))}, segment)


def test_orders_count_of_zero_selects_members_who_never_bought(segment):
    never = MemberFactory()
    buyer = MemberFactory()
    _order(buyer, days_ago=3)

    selected = ids({"field": "orders_count", "op": "eq", "value": 0})

    assert {never.pk, buyer.pk} & selected == {never.pk}


def test_window_counts_orders_placed_in_the_last_n_days_from_now(segment):
    member = MemberFactory()
    _order(member, days_ago=90)
    _order(member, days_ago=90 + 1 / 86400)

    twice = {"field": "orders_count", "op": "eq", "value": 1, "days": 90}

    assert member.pk in ids(twice)


def test_orders_total_is_zero_for_a_member_without_orders(segment):
    never = MemberFactory()

    assert never.pk in ids({"field": "orders_total", "op": "range", "value": [None, 0]})


def test_orders_average_never_matches_a_member_without_orders(segment):
    never = MemberFactory()

    assert never.pk not in ids({"field": "orders_average", "op": "range", "value": [None, 1000]})
    assert never.pk in ids({"not": {"field": "orders_average", "op": "range",
                                    "value": [None, 1000]}})


def test_orders_average_is_exact_for_a_fraction_of_a_cent(segment):
    member = MemberFactory()
    _order(member, days_ago=1, total="10.01")
    _order(member, days_ago=2, total="10.02")

    assert member.pk in ids({"field": "orders_average", "op": "eq", "value": 10.015})


def test_last_purchase_of_a_member_who_never_bought_matches_neither_recent_nor_old(segment):
    never = MemberFactory()

    recent = ids({"field": "last_purchase", "op": "in_last_days", "value": 36_600})
    old = ids({"field": "last_purchase", "op": "more_than_days_ago", "value": 0})

    assert never.pk not in recent | old


def test_first_time_buyer_in_a_window_placed_its_only_order_in_it(segment):
    recent = MemberFactory()
    _order(recent, days_ago=5)
    long_ago = MemberFactory()
    _order(long_ago, days_ago=200)
    twice = MemberFactory()
    _order(twice, days_ago=5)
    _order(twice, days_ago=200)

    selected = ids({"field": "first_time_buyer", "op": "eq", "value": True, "days": 30})

    assert {recent.pk, long_ago.pk, twice.pk} & selected == {recent.pk}


def test_bought_product_none_includes_members_who_never_bought(segment):
    product = ProductFactory(sku="ONLY-1")
    never = MemberFactory()
    buyer = MemberFactory()
    _order(buyer, days_ago=3, product=product)

    selected = ids({"field": "bought_product", "op": "none", "value": ["ONLY-1"]})

    assert {never.pk, buyer.pk} & selected == {never.pk}


def test_bought_category_in_a_window_ignores_older_orders(segment):
    product = ProductFactory(sku="TEA-OLD", category="tea")
    old = MemberFactory()
    _order(old, days_ago=100, product=product)
    recent = MemberFactory()
    _order(recent, days_ago=10, product=product)

    selected = ids({"field": "bought_category", "op": "any", "value": ["tea"], "days": 30})

    assert {old.pk, recent.pk} & selected == {recent.pk}


def test_not_having_at_least_zero_orders_selects_nobody(segment):
    assert ids({"not": {"field": "orders_count", "op": "range", "value": [0, None]}}) == set()
