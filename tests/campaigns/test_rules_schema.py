from __future__ import annotations

import jsonschema
import pytest

from tests.loyalty.factories import TierFactory

pytestmark = pytest.mark.django_db

VALID = [
    {},
    [{"field": "language", "op": "eq", "value": "de"}],
    {"and": [
        {"or": [{"field": "city", "op": "contains", "value": "Ri"},
                {"field": "location", "op": "within_km",
                 "value": {"store": "old-town", "km": 5}}]},
        {"not": {"field": "orders_count", "op": "range", "value": [2, None], "days": 90}},
        {"field": "tier", "op": "in", "value": ["gold"]},
        {"field": "email", "op": "empty"},
        {"field": "birthday", "op": "in_next_days", "value": 7},
    ]},
]
INVALID = [
    {"and": []},
    {"xor": [{"field": "language", "op": "eq", "value": "de"}]},
    {"field": "language", "op": "range", "value": ["a", "b"]},
    {"field": "language", "op": "eq", "value": "de", "days": 3},
    {"field": "tier", "op": "eq", "value": "tin"},
    {"field": "orders_count", "op": "eq", "value": "two"},
]


@pytest.fixture
def schema(marketer_client):
    TierFactory(code="gold")
    response = marketer_client.get("/api/v1/target-groups/rules-schema/")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("tree", VALID)
def test_schema_accepts_trees_the_compiler_accepts(schema, tree):
    jsonschema.validate(tree, schema)


@pytest.mark.parametrize("tree", INVALID)
def test_schema_refuses_malformed_trees(schema, tree):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tree, schema)
