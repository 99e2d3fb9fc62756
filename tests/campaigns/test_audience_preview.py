from __future__ import annotations

import pytest

from campaigns.selectors import audience_preview
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
