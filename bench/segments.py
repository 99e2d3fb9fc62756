"""segment_count and segment_count_nested: how long a marketer waits for a group's size."""

from __future__ import annotations

from typing import Any

from django.db import connection

from bench.options import Options
from bench.results import Measured, median_of, timed
from campaigns.models import TargetGroup
from campaigns.selectors import target_group_members, target_group_size
from members.models import Member

FLAT_WHAT = ("3 member-field rules (language in, timezone in, joined in the last 2 years) + 1 "
             "purchase rule (2+ orders in the last 90 days)")
NESTED_WHAT = ("10 conditions in nested AND / OR / NOT groups: country or within 50 km of "
               "Paris, age, not gender, total spent in 180 days or (tier and last purchase), "
               "reachable by email, bought coffee or tea in a year, joined in the last 3 years")


def flat_rules() -> dict[str, Any]:
    return {"and": [
        {"field": "language", "op": "in", "value": ["en", "de", "fr"]},
        {"field": "timezone", "op": "in",
         "value": ["Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York"]},
        {"field": "created_at", "op": "in_last_days", "value": 2 * 365},
        {"field": "orders_count", "op": "range", "value": [2, None], "days": 90},
    ]}


def nested_rules() -> dict[str, Any]:
    return {"and": [
        {"or": [
            {"field": "country", "op": "in", "value": ["DE", "AT", "CH"]},
            {"field": "location", "op": "within_km",
             "value": {"lat": 48.857, "lon": 2.352, "km": 50}},
        ]},
        {"field": "age", "op": "range", "value": [25, 60]},
        {"not": {"field": "gender", "op": "eq", "value": "other"}},
        {"or": [
            {"field": "orders_total", "op": "range", "value": [50, None], "days": 180},
            {"and": [
                {"field": "tier", "op": "in", "value": ["gold", "platinum"]},
                {"field": "last_purchase", "op": "in_last_days", "value": 365},
            ]},
        ]},
        {"field": "reachable", "op": "reachable", "value": "email"},
        {"field": "bought_category", "op": "any", "value": ["coffee", "tea"], "days": 365},
        {"field": "created_at", "op": "in_last_days", "value": 3 * 365},
    ]}


def _explain(group: TargetGroup) -> str:
    sql, params = target_group_members(target_group=group).order_by().values("pk") \
        .query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ({sql}) counted",
                       params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _count(options: Options, name: str, rules: dict[str, Any], what: str) -> Measured:
    group, _ = TargetGroup.objects.update_or_create(name=name, defaults={"rules": rules})
    sizes: list[int] = []

    def measure() -> float:
        seconds, size = timed(lambda: target_group_size(target_group=group))
        sizes.append(size)
        return seconds

    value, per_run = median_of(options.runs, measure)
    extra: dict[str, Any] = {"what": what, "count": sizes[-1], "per_run": per_run}
    if options.explain:
        extra["plan"] = _explain(group)
    return Measured(Member.objects.count(), value, options.runs, extra)


def segment_count(options: Options) -> Measured:
    """Seconds for the size of a 3-field + 1-purchase-rule group over every seeded member."""
    return _count(options, "bench segment_count", flat_rules(), FLAT_WHAT)


def segment_count_nested(options: Options) -> Measured:
    """Seconds for the size of a 10-condition nested group over every seeded member."""
    return _count(options, "bench segment_count_nested", nested_rules(), NESTED_WHAT)
