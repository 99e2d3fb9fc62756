"""The fields a condition may name: a registry of field specs, by key.

The families of `campaigns` register here at import; a higher app (communications, for
engagement) registers its family in its `AppConfig.ready()`, so `campaigns` never imports it.
Custom attributes are read from the database each time, since marketers declare them live.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from campaigns.rules import membership, places, profile, purchases, reach
from campaigns.rules.spec import OPERATORS, FieldSpec

_FIELDS: dict[str, FieldSpec] = {}


def fields_register(specs: Iterable[FieldSpec]) -> None:
    for spec in specs:
        if spec.key in _FIELDS and _FIELDS[spec.key] is not spec:
            raise ValueError(f"rule field {spec.key!r} is registered twice")
        _FIELDS[spec.key] = spec


fields_register([*profile.FIELDS, *purchases.FIELDS, *places.FIELDS, *reach.FIELDS,
                 *membership.FIELDS])


def field_spec(key: str) -> FieldSpec | None:
    if key.startswith(profile.ATTRIBUTE_PREFIX):
        from members.models import CustomAttribute

        name = key.removeprefix(profile.ATTRIBUTE_PREFIX)
        # "__" would split the JSON lookup path; such a key cannot be a condition.
        attribute = CustomAttribute.objects.filter(key=name).first() if "__" not in name \
            else None
        return profile.attribute_spec(attribute) if attribute else None
    return _FIELDS.get(key)


def field_specs() -> list[FieldSpec]:
    return [*_FIELDS.values(), *profile.attribute_specs()]


def field_keys() -> list[str]:
    return sorted(_FIELDS) + [f"{profile.ATTRIBUTE_PREFIX}<key>"]


def catalog() -> list[dict[str, Any]]:
    """Every field as the rule builder and the API describe it."""
    return [
        {"key": spec.key, "label": spec.label, "family": spec.family, "kind": spec.kind,
         "ops": [{"key": op, "label": OPERATORS[op]} for op in spec.ops],
         "windowed": spec.windowed, "help": spec.help,
         "choices": [{"value": value, "label": str(label)} for value, label in spec.choices()]
         if spec.choices else None}
        for spec in field_specs()
    ]
