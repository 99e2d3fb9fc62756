"""Bad trees: every error names its path in the tree, all errors come together."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.rules import rules_validate
from tests.campaigns.factories import StaticListFactory, TargetGroupFactory
from tests.communications.factories import MailingFactory
from tests.loyalty.factories import ProductFactory, StoreFactory, TierFactory
from tests.members.factories import CustomAttributeFactory

pytestmark = pytest.mark.django_db

CITY = {"field": "city", "op": "eq", "value": "Riga"}


def _errors(tree, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as error:
        rules_validate(tree, **kwargs)
    return error.value.message_dict


def _nested(depth: int) -> dict:
    node = CITY
    for _ in range(depth):
        node = {"not": node}
    return node


@pytest.mark.parametrize(("tree", "path", "says"), [
    ({"field": "shoe_size", "op": "eq", "value": 42}, "rules.field", "unknown field"),
    ({"and": [CITY, {"field": "attribute.undeclared", "op": "empty"}]}, "rules.and[1].field",
     "unknown field"),
    ([CITY, {"field": "city", "op": "range", "value": ["a", "b"]}], "rules[1].op",
     "does not apply"),
    ({"field": "tier", "op": "contains", "value": "go"}, "rules.op", "does not apply"),
    ({"field": "reachable", "op": "eq", "value": "email"}, "rules.op", "does not apply"),
], ids=["unknown field", "undeclared attribute", "range on text", "contains on choice",
        "eq on reachable"])
def test_unknown_field_or_operator_is_refused_at_its_path(tree, path, says):
    assert says in " ".join(_errors(tree)[path])


@pytest.mark.parametrize(("condition", "says"), [
    ({"field": "city", "op": "eq", "value": ""}, "non-empty text"),
    ({"field": "city", "op": "eq", "value": 7}, "non-empty text"),
    ({"field": "city", "op": "in", "value": []}, "non-empty list"),
    ({"field": "city", "op": "empty", "value": "x"}, "takes no value"),
    ({"field": "gender", "op": "eq", "value": "unicorn"}, "unknown value"),
    ({"field": "attribute.score", "op": "eq", "value": "ten"}, "must be a number"),
    ({"field": "attribute.score", "op": "range", "value": [None, None]}, "at least one end"),
    ({"field": "attribute.score", "op": "range", "value": [5, 1]}, "low must not be above"),
    ({"field": "attribute.vip", "op": "eq", "value": "yes"}, "true or false"),
    ({"field": "birth_date", "op": "eq", "value": "2025-13-01"}, "YYYY-MM-DD"),
    ({"field": "registered_at", "op": "range", "value": ["yesterday", None]}, "ISO date"),
    ({"field": "registered_at", "op": "range", "value": [None, "2025-02-30"]}, "ISO date"),
    ({"field": "registered_at", "op": "in_last_days", "value": -1}, "whole number"),
    ({"field": "orders_count", "op": "eq", "value": 1.5}, "whole number"),
    ({"field": "birthday", "op": "in_next_days", "value": 367}, "from 0 to 366"),
    ({"field": "age", "op": "range", "value": [30, 18]}, "low must not be above"),
    ({"field": "age", "op": "range", "value": [0, 151]}, "from 0 to 150"),
    ({"field": "location", "op": "within_km", "value": {"lat": 56.9, "lon": 24.1, "km": 0}},
     "km must be above 0"),
    ({"field": "location", "op": "within_km",
      "value": {"lat": 91, "lon": 24.1, "km": 5}}, "lat must be within"),
    ({"field": "reachable", "op": "reachable", "value": "pigeon"}, "must be one of"),
    ({"field": "first_time_buyer", "op": "eq", "value": 1}, "true or false"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_value_is_refused_at_the_value_path(condition, says):
    CustomAttributeFactory(key="score", type="number")
    CustomAttributeFactory(key="vip", type="boolean")

    errors = _errors({"or": [CITY, condition]})

    assert says in " ".join(errors["rules.or[1].value"])


@pytest.mark.parametrize(("condition", "says"), [
    ({**CITY, "days": 30}, "takes no window"),
    ({"field": "last_purchase", "op": "in_last_days", "value": 3, "days": 30},
     "takes no window"),
    ({"field": "orders_count", "op": "eq", "value": 1, "days": 0}, "from 1 to 36600"),
    ({"field": "orders_count", "op": "eq", "value": 1, "days": 36_601}, "from 1 to 36600"),
    ({"field": "orders_count", "op": "eq", "value": 1, "days": "30"}, "whole number"),
])
def test_bad_days_are_refused_at_the_days_path(condition, says):
    assert says in " ".join(_errors([condition])["rules[0].days"])


@pytest.mark.parametrize(("tree", "path"), [
    ({"and": []}, "rules.and"),
    ({"or": [CITY, {"and": []}]}, "rules.or[1].and"),
    ({"not": {"or": []}}, "rules.not.or"),
])
def test_an_empty_group_is_refused(tree, path):
    assert "non-empty list" in " ".join(_errors(tree)[path])


def test_a_node_that_is_neither_group_nor_condition_is_refused():
    errors = _errors([CITY, "language=de"])

    assert "must be a group" in " ".join(errors["rules[1]"])


def test_a_group_with_two_kinds_is_refused():
    errors = _errors({"and": [CITY], "or": [CITY]})

    assert "exactly one key" in " ".join(errors["rules"])


def test_unknown_keys_in_a_condition_are_refused():
    errors = _errors({"and": [{**CITY, "valeu": "Riga"}]})

    assert "valeu" in " ".join(errors["rules.and[0]"])


def test_groups_nest_twelve_deep():
    rules_validate(_nested(12))


def test_a_thirteenth_level_of_groups_is_refused():
    errors = _errors(_nested(13))

    assert any("at most 12 deep" in message for messages in errors.values()
               for message in messages)


def test_a_tree_holds_at_most_200_conditions():
    rules_validate({"or": [CITY] * 200})

    errors = _errors({"or": [CITY] * 201})

    assert "at most 200 conditions" in " ".join(errors["rules.or[200]"])


def test_a_cycle_of_target_group_references_is_refused():
    first = TargetGroupFactory(name="First")
    second = TargetGroupFactory(name="Second", rules={"field": "target_group",
                                                      "op": "member_of", "value": first.pk})

    errors = _errors({"field": "target_group", "op": "member_of", "value": second.pk},
                     target_group=first)

    assert "cycle" in " ".join(errors["rules.value"])


def test_a_group_referring_to_itself_is_refused():
    group = TargetGroupFactory()

    errors = _errors({"not": {"field": "target_group", "op": "member_of", "value": group.pk}},
                     target_group=group)

    assert "cycle" in " ".join(errors["rules.not.value"])


def test_a_cycle_further_down_the_chain_is_refused():
    first = TargetGroupFactory(name="A")
    second = TargetGroupFactory(name="B")
    third = TargetGroupFactory(name="C", rules={"field": "target_group", "op": "member_of",
                                                "value": second.pk})
    second.rules = {"field": "target_group", "op": "member_of", "value": third.pk}
    second.save()

    errors = _errors([{"field": "target_group", "op": "member_of", "value": second.pk}],
                     target_group=first)

    assert "cycle" in " ".join(errors["rules[0].value"])


def test_two_references_to_the_same_group_are_no_cycle():
    shared = TargetGroupFactory(rules=CITY)
    reference = {"field": "target_group", "op": "member_of", "value": shared.pk}

    rules_validate({"and": [reference, {"not": reference}]}, target_group=TargetGroupFactory())


@pytest.mark.parametrize(("condition", "says"), [
    ({"field": "bought_product", "op": "any", "value": ["NO-SUCH-SKU"]}, "NO-SUCH-SKU"),
    ({"field": "bought_category", "op": "none", "value": ["no-such-category"]},
     "no-such-category"),
    ({"field": "location", "op": "within_km", "value": {"store": "atlantis", "km": 5}},
     "atlantis"),
    ({"field": "received", "op": "mailing", "value": 999_999}, "no mailing"),
    ({"field": "opened", "op": "campaign", "value": 999_999}, "no campaign"),
    ({"field": "static_list", "op": "member_of", "value": 999_999}, "no static list"),
    ({"field": "target_group", "op": "not_member_of", "value": 999_999}, "no target group"),
    ({"field": "tier", "op": "eq", "value": "diamond"}, "unknown value"),
])
def test_a_reference_to_something_unknown_is_refused(condition, says):
    ProductFactory(sku="KNOWN-1", category="coffee")
    StoreFactory(code="old-town")
    MailingFactory()
    StaticListFactory()
    TierFactory(code="gold")

    errors = _errors([CITY, condition])

    assert says in " ".join(errors["rules[1].value"])


def test_every_error_of_a_tree_is_reported_together():
    errors = _errors({"and": [
        {"field": "shoe_size", "op": "eq", "value": 42},
        {"or": [{"field": "city", "op": "eq", "value": ""}, {"and": []}]},
        {"field": "orders_count", "op": "eq", "value": 1, "days": 0},
    ]})

    assert set(errors) == {"rules.and[0].field", "rules.and[1].or[0].value",
                           "rules.and[1].or[1].and", "rules.and[2].days"}


def test_a_target_group_with_a_bad_tree_fails_model_validation_naming_the_path():
    group = TargetGroupFactory.build(rules=[{"field": "tier", "op": "range", "value": [1, 2]}])

    with pytest.raises(ValidationError) as error:
        group.full_clean()

    assert error.value.message_dict["rules"][0].startswith("rules[0].op: ")
