"""The rule tree's JSON Schema (draft 2020-12), generated from the field catalog.

It describes the shape a client may send — groups, and per field its operators and the value
and window it takes — so API clients and editors can check a tree before posting it. The
compiler stays the authority: it also checks what a schema cannot (known SKUs and ids, a cycle
of groups, low <= high) and names the path of each error.
"""

from __future__ import annotations

from typing import Any

from campaigns.rules.catalog import field_specs
from campaigns.rules.spec import MAX_DAYS, VALUELESS_OPS, FieldSpec

_SCALARS: dict[str, dict[str, Any]] = {
    "text": {"type": "string", "minLength": 1},
    "choice": {"type": "string", "minLength": 1},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "date": {"type": "string", "format": "date"},
    "moment": {"type": "string", "minLength": 10},
    "boolean": {"type": "boolean"},
}
_DAYS = {"type": "integer", "minimum": 0, "maximum": MAX_DAYS}
_ID = {"type": "integer", "minimum": 1}
_FAMILY_VALUES: dict[str, dict[str, Any]] = {
    "days": {"type": "integer", "minimum": 0, "maximum": 366},
    "years": {"type": "array", "prefixItems": [{"type": ["integer", "null"]}] * 2,
              "minItems": 2, "maxItems": 2},
    "skus": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "categories": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "place": {"oneOf": [
        {"type": "object", "required": ["lat", "lon", "km"], "additionalProperties": False,
         "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                        "km": {"type": "number", "exclusiveMinimum": 0}}},
        {"type": "object", "required": ["store", "km"], "additionalProperties": False,
         "properties": {"store": {"type": "string"},
                        "km": {"type": "number", "exclusiveMinimum": 0}}},
    ]},
    "channel": {"type": "string"},
    "reference": _ID,
    "target_group": _ID,
    "static_list": _ID,
}


def _value_schema(spec: FieldSpec, op: str) -> dict[str, Any] | None:
    """The value's schema for this operator; None when the operator takes no value."""
    if op in VALUELESS_OPS:
        return None
    if spec.kind in _FAMILY_VALUES:
        return _FAMILY_VALUES[spec.kind]
    scalar = dict(_SCALARS[spec.kind])
    if spec.kind == "choice" and spec.choices is not None:
        scalar["enum"] = [value for value, _ in spec.choices()]
    if op == "in":
        return {"type": "array", "items": scalar, "minItems": 1}
    if op == "range":
        bound = {"anyOf": [scalar, {"type": "null"}]}
        return {"type": "array", "prefixItems": [bound, bound], "minItems": 2, "maxItems": 2}
    if op in ("in_last_days", "more_than_days_ago", "in_next_days"):
        return _DAYS
    return scalar


def _condition_schemas(spec: FieldSpec) -> list[dict[str, Any]]:
    schemas = []
    for op in spec.ops:
        properties: dict[str, Any] = {"field": {"const": spec.key}, "op": {"const": op}}
        required = ["field", "op"]
        value = _value_schema(spec, op)
        if value is not None:
            properties["value"] = value
            required.append("value")
        else:
            properties["value"] = {"type": "null"}
        if spec.windowed:
            properties["days"] = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_DAYS}
        schemas.append({"type": "object", "properties": properties, "required": required,
                        "additionalProperties": False})
    return schemas


def rules_json_schema() -> dict[str, Any]:
    conditions = [schema for spec in field_specs() for schema in _condition_schemas(spec)]
    node = {"$ref": "#/$defs/node"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Engage target group rules",
        "description": "See docs/target-groups.md.",
        "anyOf": [
            {"type": "object", "maxProperties": 0},
            {"type": "array", "items": node},
            node,
        ],
        "$defs": {
            "node": {"anyOf": [{"$ref": "#/$defs/group"}, {"$ref": "#/$defs/condition"}]},
            "group": {"oneOf": [
                {"type": "object", "required": ["and"], "additionalProperties": False,
                 "properties": {"and": {"type": "array", "items": node, "minItems": 1}}},
                {"type": "object", "required": ["or"], "additionalProperties": False,
                 "properties": {"or": {"type": "array", "items": node, "minItems": 1}}},
                {"type": "object", "required": ["not"], "additionalProperties": False,
                 "properties": {"not": node}},
            ]},
            "condition": {"oneOf": conditions},
        },
    }
