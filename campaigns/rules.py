"""Target-group rules: validated JSON that compiles to one queryset over members.

A rule list is AND-ed; an empty list is every member. Each rule is an object:

    {"field": "language", "op": "eq", "value": "en"}
    {"field": "language", "op": "in", "value": ["en", "de"]}
    {"field": "created_at", "op": "range", "value": ["2024-01-01", null]}
    {"field": "tier", "op": "in", "value": ["gold", "silver"]}
    {"field": "consent", "op": "has", "value": "email"}
    {"field": "all"}

Errors name the path in the list (`rules[2].value`) so the marketer knows what to fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from members.models import Channel, Member
from members.selectors import marketing_consent_granted


def _parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _parse_datetime(value: Any) -> dt.datetime:
    """An ISO date or date-time; a date means its midnight, naive means the program's zone."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)) is not None:
            parsed = dt.datetime.combine(day, dt.time.min)
        if parsed is not None:
            return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    raise ValueError("must be an ISO date or date-time")


# field -> (lookup path on Member, value parser, operators it accepts)
_MEMBER_FIELDS: dict[str, tuple[str, Callable[[Any], Any], frozenset[str]]] = {
    "external_id": ("external_id", _parse_text, frozenset({"eq", "in"})),
    "first_name": ("first_name", _parse_text, frozenset({"eq", "in"})),
    "last_name": ("last_name", _parse_text, frozenset({"eq", "in"})),
    "email": ("email", _parse_text, frozenset({"eq", "in"})),
    "phone": ("phone", _parse_text, frozenset({"eq", "in"})),
    "language": ("language", _parse_text, frozenset({"eq", "in"})),
    "timezone": ("timezone", _parse_text, frozenset({"eq", "in"})),
    "created_at": ("created_at", _parse_datetime, frozenset({"eq", "range"})),
}
FIELDS = sorted([*_MEMBER_FIELDS, "tier", "consent", "all"])


def _rule_q(rule: Any, path: str) -> Q:
    if not isinstance(rule, dict):
        raise ValidationError({path: "must be an object with field, op and value"})
    field = rule.get("field")
    op = rule.get("op")
    value = rule.get("value")
    unknown_keys = set(rule) - {"field", "op", "value"}
    if unknown_keys:
        raise ValidationError({path: f"unknown keys: {', '.join(sorted(unknown_keys))}"})

    if field == "all":
        return Q()
    if field == "tier":
        return _values_q("loyalty_account__tier__code", _parse_text, op, value, path,
                         frozenset({"eq", "in"}))
    if field == "consent":
        if op != "has":
            raise ValidationError({f"{path}.op": "consent takes the operator 'has'"})
        if value not in Channel.values:
            raise ValidationError(
                {f"{path}.value": f"must be one of {', '.join(Channel.values)}"}
            )
        return Q(marketing_consent_granted(channel=value))
    if field not in _MEMBER_FIELDS:
        raise ValidationError(
            {f"{path}.field": f"unknown field {field!r}; known: {', '.join(FIELDS)}"}
        )
    lookup, parse, ops = _MEMBER_FIELDS[field]
    return _values_q(lookup, parse, op, value, path, ops)


def _values_q(lookup: str, parse: Callable[[Any], Any], op: Any, value: Any, path: str,
              ops: frozenset[str]) -> Q:
    if op not in ops:
        raise ValidationError(
            {f"{path}.op": f"operator {op!r} does not apply here; "
                           f"use one of {', '.join(sorted(ops))}"}
        )
    try:
        if op == "eq":
            return Q(**{lookup: parse(value)})
        if op == "in":
            if not isinstance(value, list) or not value:
                raise ValueError("must be a non-empty list")
            return Q(**{f"{lookup}__in": [parse(v) for v in value]})
        # range: [low, high], either end may be null (open)
        if not isinstance(value, list) or len(value) != 2 or value == [None, None]:
            raise ValueError("must be [low, high] with at least one end set")
        low, high = (None if v is None else parse(v) for v in value)
    except ValueError as exc:
        raise ValidationError({f"{path}.value": str(exc)}) from exc
    q = Q()
    if low is not None:
        q &= Q(**{f"{lookup}__gte": low})
    if high is not None:
        q &= Q(**{f"{lookup}__lte": high})
    return q


def rules_compile(rules: Any) -> Q:
    """The rule list as one `Q` over Member; raises ValidationError naming the bad path."""
    if not isinstance(rules, list):
        raise ValidationError({"rules": "must be a list of rules"})
    q = Q()
    for index, rule in enumerate(rules):
        q &= _rule_q(rule, f"rules[{index}]")
    return q


def rules_validate(rules: Any) -> None:
    rules_compile(rules)


def rules_members(rules: Any) -> QuerySet[Member]:
    return Member.objects.filter(rules_compile(rules))
