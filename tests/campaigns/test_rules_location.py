"""Location: within N km of a point or a store, great-circle distance."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.campaigns.reference import haversine_km
from tests.campaigns.rule_strategies import PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.loyalty.factories import StoreFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db
LOCATION = settings(PROPERTY, max_examples=40)


def _clear_of_the_edge(segment, value) -> bool:
    """No member within 10 cm of the circle, where float rounding (and the centre taken to
    0.1 mm) may decide."""
    lat, lon = segment.world.stores[value["store"]] if "store" in value else (
        value["lat"], value["lon"])
    return all(abs(haversine_km(member["latitude"], member["longitude"], lat, lon)
                   - value["km"]) > 1e-4
               for member in segment.world.members.values() if member["latitude"] is not None)


@LOCATION
@given(data=st.data())
def test_within_km_selects_the_members_the_document_says(segment, data):
    condition = data.draw(conditions(segment, "location", "within_km"))
    assume(_clear_of_the_edge(segment, condition["value"]))

    assert_like_reference(condition, segment)


@LOCATION
@given(data=st.data())
def test_negated_within_km_includes_members_without_a_location(segment, data):
    condition = data.draw(conditions(segment, "location", "within_km"))
    assume(_clear_of_the_edge(segment, condition["value"]))

    assert_like_reference({"not": condition}, segment)


def test_within_km_of_a_store_measures_from_the_store(segment):
    StoreFactory(code="harbour", latitude=57.0, longitude=24.0)
    near = MemberFactory(latitude=57.01, longitude=24.0)  # 1.1 km north
    far = MemberFactory(latitude=57.05, longitude=24.0)  # 5.6 km north

    selected = ids({"field": "location", "op": "within_km",
                    "value": {"store": "harbour", "km": 2}})

    assert {near.pk, far.pk} & selected == {near.pk}


def test_within_km_reaches_across_the_antimeridian(segment):
    east = MemberFactory(latitude=0.0, longitude=179.99)

    selected = ids({"field": "location", "op": "within_km",
                    "value": {"lat": 0.0, "lon": -179.99, "km": 3}})

    assert east.pk in selected


def test_member_without_a_location_is_never_within_any_distance(segment):
    nowhere = MemberFactory(latitude=None, longitude=None)

    selected = ids({"field": "location", "op": "within_km",
                    "value": {"lat": 0, "lon": 0, "km": 20_000}})

    assert nowhere.pk not in selected
