from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.rules import rules_members
from campaigns.selectors import audience_preview, members_count
from loyalty.demo import demo_seed
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db

BUYERS = {"and": [{"field": "orders_count", "op": "range", "value": [1, None], "days": 365},
                  {"field": "reachable", "op": "reachable", "value": "email"}]}


def test_preview_counts_exactly_within_the_time_budget():
    consenting_member(language="de", channel="email")
    MemberFactory(language="de", email="")

    preview = audience_preview(tree={"field": "language", "op": "eq", "value": "de"})

    assert (preview.size, preview.estimated) == (2, False)
    assert preview.reachable["email"] == 1


@pytest.mark.slow
def test_a_count_past_the_time_budget_shows_the_planners_estimate_and_says_so(settings):
    # given more members than can be counted in a millisecond
    demo_seed(members=8_000, orders_per_member=2, seed=3)
    settings.ENGAGE_SEGMENT_COUNT_TIMEOUT = 0.001
    # when the preview runs out of time
    preview = audience_preview(tree=BUYERS, sample_size=3)
    # then it answers with an estimate, marked as one, and still shows a sample
    assert preview.estimated is True
    assert preview.size > 0
    assert set(preview.reachable) == {"sms", "email", "push", "viber", "social"}
    assert len(preview.sample) == 3


@pytest.fixture
def counted_in_parts(settings):
    settings.ENGAGE_SEGMENT_SPLIT_MIN = 1
    settings.ENGAGE_SEGMENT_COUNT_WORKERS = 3


@pytest.mark.django_db(transaction=True)  # the parts count on their own connections
def test_a_count_in_parts_equals_the_count_in_one_query(counted_in_parts):
    demo_seed(members=300, orders_per_member=2, seed=5)
    members = rules_members(BUYERS)

    with CaptureQueriesContext(connection) as here:
        counted = members_count(members)

    assert counted == members.count() > 0
    assert not [q for q in here.captured_queries if "COUNT(" in q["sql"]], "counted here"


@pytest.mark.django_db(transaction=True)
def test_reachable_counts_in_parts_equal_the_counts_in_one_query(counted_in_parts, settings):
    demo_seed(members=300, orders_per_member=2, seed=5)
    in_parts = audience_preview(tree=BUYERS)
    settings.ENGAGE_SEGMENT_COUNT_WORKERS = 1

    in_one = audience_preview(tree=BUYERS)

    assert (in_parts.size, in_parts.reachable) == (in_one.size, in_one.reachable)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_count_in_parts_past_the_time_budget_shows_the_estimate(counted_in_parts, settings):
    demo_seed(members=8_000, orders_per_member=2, seed=3)
    settings.ENGAGE_SEGMENT_COUNT_TIMEOUT = 0.001

    preview = audience_preview(tree=BUYERS, sample_size=3)

    assert preview.estimated is True
    assert preview.size > 0
