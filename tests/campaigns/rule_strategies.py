"""Hypothesis strategies for valid rule trees over the generated segment data.

Values are drawn mostly from what the data holds (and its edges: case variants, prefixes, the
exact moments and sums members have), so conditions select something and boundaries get hit.
`FIELD_OPS` lists every (field, operator) of docs/target-groups.md, by family.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.campaigns.reference import CHOICE_FIELDS, MOMENT_FIELDS, TEXT_FIELDS, haversine_km
from tests.campaigns.segment_data import (
    ATTRIBUTES,
    CHANNELS,
    EDGE_DAYS,
    FLAVOURS,
    NOW,
    PRODUCTS,
    SCORES,
    STORES,
    TIERS,
    Segment,
)

TEXT_OPS = ("eq", "in", "contains", "starts_with", "empty", "not_empty")
CHOICE_OPS = ("eq", "in", "empty", "not_empty")
NUMBER_OPS = ("eq", "range", "empty", "not_empty")
DATE_OPS = NUMBER_OPS
MOMENT_OPS = ("range", "in_last_days", "more_than_days_ago", "empty", "not_empty")
KINDS = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean",
         "date": "date", "choice": "choice"}
KIND_OPS = {"text": TEXT_OPS, "choice": CHOICE_OPS, "integer": NUMBER_OPS,
            "number": NUMBER_OPS, "date": DATE_OPS, "moment": MOMENT_OPS,
            "boolean": ("eq", "empty", "not_empty")}

FIELD_OPS: dict[str, list[tuple[str, str]]] = {
    "profile": [
        *[(name, op) for name in TEXT_FIELDS for op in TEXT_OPS],
        *[(name, op) for name in CHOICE_FIELDS for op in CHOICE_OPS],
        *[("birth_date", op) for op in DATE_OPS],
        *[(name, op) for name in MOMENT_FIELDS for op in MOMENT_OPS],
        ("birthday", "in_next_days"),
        ("age", "range"), ("age", "empty"), ("age", "not_empty"),
    ],
    "attributes": [(f"attribute.{key}", op) for key, kind in ATTRIBUTES.items()
                   for op in KIND_OPS[KINDS[kind]]],
    "loyalty": [*[("tier", op) for op in CHOICE_OPS], *[("tier_since", op) for op in MOMENT_OPS]],
    "purchases": [
        ("orders_count", "eq"), ("orders_count", "range"),
        ("orders_total", "eq"), ("orders_total", "range"),
        ("orders_average", "eq"), ("orders_average", "range"),
        *[("last_purchase", op) for op in MOMENT_OPS],
        ("first_time_buyer", "eq"),
        ("bought_product", "any"), ("bought_product", "none"),
        ("bought_category", "any"), ("bought_category", "none"),
    ],
    "location": [("location", "within_km")],
    "reach": [("reachable", "reachable")],
    "engagement": [(name, op) for name in ("received", "opened", "clicked")
                   for op in ("mailing", "campaign")],
    "membership": [(name, op) for name in ("target_group", "static_list")
                   for op in ("member_of", "not_member_of")],
}
WINDOWED = {"orders_count", "orders_total", "orders_average", "first_time_buyer",
            "bought_product", "bought_category", "received", "opened", "clicked"}

# Small enough for every run (the data is built once per module); no example database is kept,
# so each run tries fresh examples.
PROPERTY = settings(max_examples=12, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
TREES = settings(PROPERTY, max_examples=60)

DAYS = st.one_of(st.sampled_from([*EDGE_DAYS, 36_600]), st.integers(1, 2000))
COUNTS = st.one_of(st.sampled_from([0, *EDGE_DAYS]), st.integers(0, 2000))


def _pair(values: st.SearchStrategy[Any], key=lambda value: value) -> st.SearchStrategy[list]:
    """[low, high] with low <= high, either end (not both) possibly open."""
    def shape(both: list[Any], open_end: int) -> list[Any]:
        low, high = sorted(both, key=key)
        return [None if open_end == 0 else low, None if open_end == 1 else high]
    return st.builds(shape, st.lists(values, min_size=2, max_size=2), st.sampled_from([0, 1, 2]))


def _text_values(segment: Segment, name: str) -> st.SearchStrategy[str]:
    if name.startswith("attribute."):
        key = name.removeprefix("attribute.")
        stored = {member["custom_attributes"].get(key) for member in segment.world.members.values()}
    else:
        stored = {member[name] for member in segment.world.members.values()}
    stored = sorted(value for value in stored if isinstance(value, str) and value)
    if not stored:
        stored = ["x"]
    variants = st.sampled_from(stored).flatmap(lambda text: st.sampled_from(sorted({
        text, text.upper(), text.lower(), text[:3] or text, text[1:4] or text, text[-2:] or text,
    })))
    return st.one_of(variants, st.text(alphabet="aAnēĒR%_' -x1@.", min_size=1, max_size=4))


def _moment_text(value: dt.datetime, style: int) -> str:
    if style == 0:
        return value.date().isoformat()
    if style == 1:  # naive, in the program's zone
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
    if style == 2:  # midnight of that day, naive
        return f"{value.date().isoformat()}T00:00:00"
    if style == 3:
        return value.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    return value.isoformat()


def _moment_values(stored: list[dt.datetime]) -> st.SearchStrategy[str]:
    moments = st.one_of(
        st.sampled_from(stored or [NOW]),
        st.integers(0, 1500 * 86400).map(lambda seconds: NOW - dt.timedelta(seconds=seconds)),
    )
    return st.builds(_moment_text, moments, st.integers(0, 4))


def _parsed_bound(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _moment_condition(name: str, op: str, stored: list[dt.datetime]) -> st.SearchStrategy:
    if op in ("empty", "not_empty"):
        return st.just({"field": name, "op": op})
    if op == "range":
        return _pair(_moment_values(stored), key=_parsed_bound).map(
            lambda pair: {"field": name, "op": op, "value": pair})
    return COUNTS.map(lambda days: {"field": name, "op": op, "value": days})


def _number_condition(name: str, op: str, values: st.SearchStrategy) -> st.SearchStrategy:
    if op in ("empty", "not_empty"):
        return st.just({"field": name, "op": op})
    if op == "eq":
        return values.map(lambda value: {"field": name, "op": op, "value": value})
    return _pair(values).map(lambda pair: {"field": name, "op": op, "value": pair})


def _scalar_condition(name: str, kind: str, op: str, segment: Segment) -> st.SearchStrategy:
    if op in ("empty", "not_empty"):
        return st.just({"field": name, "op": op})
    if kind == "text":
        values = _text_values(segment, name)
        if op == "in":
            return st.lists(values, min_size=1, max_size=4).map(
                lambda value: {"field": name, "op": op, "value": value})
        return values.map(lambda value: {"field": name, "op": op, "value": value})
    if kind == "choice":
        choices = {"gender": ["female", "male", "other"],
                   "status": ["active", "blocked", "erased"],
                   "tier": TIERS}.get(name, FLAVOURS)
        if op == "in":
            return st.lists(st.sampled_from(choices), min_size=1, max_size=3).map(
                lambda value: {"field": name, "op": op, "value": value})
        return st.sampled_from(choices).map(lambda value: {"field": name, "op": op,
                                                           "value": value})
    if kind == "boolean":
        return st.booleans().map(lambda value: {"field": name, "op": op, "value": value})
    if kind == "date":
        stored = sorted({
            (str(member["birth_date"]) if name == "birth_date"
             else member["custom_attributes"].get(name.removeprefix("attribute.")))
            for member in segment.world.members.values()} - {None, "None"})
        dates = st.one_of(st.sampled_from(stored), st.dates(dt.date(1930, 1, 1),
                                                            dt.date(2030, 12, 31)).map(
            dt.date.isoformat))
        return _number_condition(name, op, dates)
    if kind == "integer":
        return _number_condition(name, op, st.integers(-5, 120))
    if kind == "number":
        return _number_condition(name, op, st.one_of(
            st.sampled_from(SCORES), st.integers(-5, 1200),
            st.decimals(-5, 1200, places=2).map(float)))
    raise ValueError(kind)


def _window(condition: dict[str, Any], days: int | None) -> dict[str, Any]:
    return condition if days is None else {**condition, "days": days}


def conditions(segment: Segment, name: str, op: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid condition on `name` with `op`, its value drawn around the segment's data."""
    strategy = _condition(segment, name, op)
    if name in WINDOWED:
        return st.builds(_window, strategy, st.one_of(st.none(), DAYS))
    return strategy


def _condition(segment: Segment, name: str, op: str) -> st.SearchStrategy[dict[str, Any]]:
    world = segment.world
    if name in TEXT_FIELDS:
        return _scalar_condition(name, "text", op, segment)
    if name in CHOICE_FIELDS or name == "tier":
        return _scalar_condition(name, "choice", op, segment)
    if name == "birth_date":
        return _scalar_condition(name, "date", op, segment)
    if name in MOMENT_FIELDS:
        stored = [member[name] for member in world.members.values() if member[name]]
        return _moment_condition(name, op, stored)
    if name == "tier_since":
        stored = [account["tier_since"] for account in world.accounts.values()
                  if account["tier_since"]]
        return _moment_condition(name, op, stored)
    if name == "birthday":
        return st.one_of(st.sampled_from([0, 1, 2, 3, 12, 30, 364, 365, 366]),
                         st.integers(0, 366)).map(
            lambda days: {"field": name, "op": op, "value": days})
    if name == "age":
        return _number_condition(name, op, st.one_of(st.sampled_from([0, 1, 17, 18, 30, 65]),
                                                     st.integers(0, 150)))
    if name.startswith("attribute."):
        kind = KINDS[ATTRIBUTES[name.removeprefix("attribute.")]]
        return _scalar_condition(name, kind, op, segment)
    if name == "orders_count":
        return _number_condition(name, op, st.integers(0, 7))
    if name in ("orders_total", "orders_average"):
        # Sums and averages members have, as a marketer would write them: an average that does
        # not end (10.21 / 3) to four places only, since its digits past those are the engine's.
        sums = sorted({float(round(sum(o.total for o in orders)
                                   / (len(orders) if name == "orders_average" else 1), 4))
                       for orders in world.orders.values() if orders})
        return _number_condition(name, op, st.one_of(
            st.sampled_from(sums), st.sampled_from([0, 0.0, 10, 19.99, 20, 100]),
            st.decimals(0, 800, places=2).map(float)))
    if name == "last_purchase":
        stored = [order.placed_at for orders in world.orders.values() for order in orders]
        return _moment_condition(name, op, stored)
    if name == "first_time_buyer":
        return st.booleans().map(lambda value: {"field": name, "op": op, "value": value})
    if name == "bought_product":
        return st.lists(st.sampled_from(sorted(PRODUCTS)), min_size=1, max_size=3, unique=True
                        ).map(lambda value: {"field": name, "op": op, "value": value})
    if name == "bought_category":
        return st.lists(st.sampled_from(sorted(set(PRODUCTS.values()))), min_size=1,
                        max_size=2, unique=True
                        ).map(lambda value: {"field": name, "op": op, "value": value})
    if name == "location":
        return _centres(segment).flatmap(lambda centre: _radii(segment, centre).map(
            lambda km: {"field": name, "op": op, "value": {**centre, "km": km}}))
    if name == "reachable":
        return st.sampled_from(CHANNELS).map(lambda value: {"field": name, "op": op,
                                                            "value": value})
    if name in ("received", "opened", "clicked"):
        ids = segment.mailings if op == "mailing" else segment.campaigns
        return st.sampled_from(ids).map(lambda value: {"field": name, "op": op, "value": value})
    if name == "target_group":
        return st.sampled_from(segment.target_groups).map(
            lambda value: {"field": name, "op": op, "value": value})
    if name == "static_list":
        return st.sampled_from(segment.static_lists).map(
            lambda value: {"field": name, "op": op, "value": value})
    raise ValueError(name)


def _radii(segment: Segment, centre: dict[str, Any]) -> st.SearchStrategy[float]:
    """Round distances, any distance, or one just inside or outside a member's distance."""
    lat, lon = STORES[centre["store"]] if "store" in centre else (centre["lat"], centre["lon"])
    distances = sorted(haversine_km(member["latitude"], member["longitude"], lat, lon)
                       for member in segment.world.members.values()
                       if member["latitude"] is not None)
    edges = st.builds(lambda km, factor: min(max(km * factor, 0.01), 20_000),
                      st.sampled_from(distances),
                      st.sampled_from([0.99, 0.9999, 0.999999, 1.000001, 1.0001, 1.01]))
    return st.one_of(st.sampled_from([0.5, 1, 5, 10, 25, 100, 300, 1000, 20000]),
                     st.floats(0.01, 20000), edges)


def _centres(segment: Segment) -> st.SearchStrategy[dict[str, Any]]:
    points = sorted({(member["latitude"], member["longitude"])
                     for member in segment.world.members.values()
                     if member["latitude"] is not None})
    return st.one_of(
        st.sampled_from(sorted(STORES)).map(lambda code: {"store": code}),
        st.sampled_from(points).map(lambda point: {"lat": point[0], "lon": point[1]}),
        st.builds(lambda lat, lon: {"lat": lat, "lon": lon},
                  st.floats(-90, 90), st.floats(-180, 180)),
    )


def any_condition(segment: Segment) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from([pair for pairs in FIELD_OPS.values() for pair in pairs]).flatmap(
        lambda pair: conditions(segment, *pair))


def trees(segment: Segment, *, leaves: int = 10) -> st.SearchStrategy[Any]:
    """A root: a node, or a list of nodes (AND)."""
    return st.one_of(nodes(segment, leaves=leaves),
                     st.lists(nodes(segment, leaves=leaves // 2), min_size=1, max_size=3))


def nodes(segment: Segment, *, leaves: int = 10) -> st.SearchStrategy[dict[str, Any]]:
    """Nested AND / OR / NOT groups over conditions of every family."""
    return st.recursive(
        any_condition(segment),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=4).map(lambda nodes: {"and": nodes}),
            st.lists(children, min_size=1, max_size=4).map(lambda nodes: {"or": nodes}),
            children.map(lambda node: {"not": node}),
        ),
        max_leaves=leaves,
    )
