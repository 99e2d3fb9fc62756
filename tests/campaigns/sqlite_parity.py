"""The same seeded data and rule trees on any database, as JSON: run as a script on SQLite
(the demo's database) and in-process on PostgreSQL, then compared by the test beside it.

Members are named by (first name, last name, phone, birth date): ids come from sequences,
which differ between the two databases, while the seeded values do not.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

SEED = 11
MEMBERS = 300
SEEDED_AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
EVALUATED_AT = SEEDED_AT + dt.timedelta(hours=5)

TREES: dict[str, Any] = {
    "text contains": {"field": "first_name", "op": "contains", "value": "an"},
    "text starts with": {"field": "last_name", "op": "starts_with", "value": "M"},
    "email empty": {"field": "email", "op": "empty"},
    "not city": {"not": {"field": "city", "op": "eq", "value": "Berlin"}},
    "choice in": {"field": "gender", "op": "in", "value": ["female", "other"]},
    "age range": {"field": "age", "op": "range", "value": [30, 45]},
    "birthday": {"field": "birthday", "op": "in_next_days", "value": 40},
    "tier": {"field": "tier", "op": "in", "value": ["silver", "gold"]},
    "tier since": {"field": "tier_since", "op": "in_last_days", "value": 200},
    "orders count window": {"field": "orders_count", "op": "range", "value": [2, None],
                            "days": 90},
    "orders total zero allowed": {"field": "orders_total", "op": "range", "value": [None, 40]},
    "orders average": {"field": "orders_average", "op": "range", "value": [10, 25],
                       "days": 365},
    "last purchase long ago": {"field": "last_purchase", "op": "more_than_days_ago",
                               "value": 60},
    "never bought": {"field": "last_purchase", "op": "empty"},
    "first-time buyer": {"field": "first_time_buyer", "op": "eq", "value": True},
    "bought category": {"field": "bought_category", "op": "any", "value": ["coffee"],
                        "days": 180},
    "never bought tea": {"field": "bought_category", "op": "none", "value": ["tea"]},
    "near paris": {"field": "location", "op": "within_km",
                   "value": {"lat": 48.857, "lon": 2.352, "km": 12}},
    "reachable email": {"field": "reachable", "op": "reachable", "value": "email"},
    "reachable sms": {"field": "reachable", "op": "reachable", "value": "sms"},
    "attribute number": {"field": "attribute.points", "op": "range", "value": [3, 10]},
    "attribute boolean": {"field": "attribute.vip", "op": "eq", "value": True},
    "attribute date": {"field": "attribute.since", "op": "range", "value": ["2024-01-01", None]},
    "attribute text empty": {"not": {"field": "attribute.nick", "op": "empty"}},
    "nested": {"and": [
        {"or": [{"field": "country", "op": "in", "value": ["DE", "FR"]},
                {"field": "orders_count", "op": "eq", "value": 0}]},
        {"not": {"and": [{"field": "gender", "op": "eq", "value": "male"},
                         {"field": "age", "op": "range", "value": [None, 40]}]}},
    ]},
}


def seed() -> None:
    from loyalty.demo import demo_seed
    from members.models import CustomAttribute, Member

    demo_seed(members=MEMBERS, orders_per_member=4, seed=SEED, now=SEEDED_AT)
    for key, kind in (("points", "integer"), ("vip", "boolean"), ("since", "date"),
                      ("nick", "string")):
        CustomAttribute.objects.get_or_create(key=key, defaults={"label": key, "type": kind})
    Member.objects.filter(first_name__startswith="A").update(
        custom_attributes={"points": 5, "vip": True, "since": "2024-05-01", "nick": "ace"})
    Member.objects.filter(first_name__startswith="M").update(
        custom_attributes={"points": 12, "vip": False, "nick": ""})
    Member.objects.filter(first_name__startswith="J").update(custom_attributes={"nick": None})


def evaluate() -> dict[str, list[list[str]]]:
    from campaigns.rules import rules_members

    return {
        name: sorted([first, last, phone, str(birth)] for first, last, phone, birth in
                     rules_members(tree, now=EVALUATED_AT).values_list(
                         "first_name", "last_name", "phone", "birth_date"))
        for name, tree in TREES.items()
    }


if __name__ == "__main__":
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    seed()
    json.dump(evaluate(), sys.stdout)
