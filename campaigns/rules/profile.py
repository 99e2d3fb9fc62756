"""Conditions on the member's profile: fields, custom attributes, birthday, age and tier."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import ExpressionWrapper, F, JSONField, Q
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import ExtractDay, ExtractMonth

from campaigns.rules.spec import (
    BOOLEAN_OPS,
    CHOICE_OPS,
    DATE_OPS,
    MOMENT_OPS,
    NUMBER_OPS,
    TEXT_OPS,
    Condition,
    FieldSpec,
    RuleValueError,
    lookup,
    parse_count,
)
from loyalty.models import Tier
from members.models import CustomAttribute, Member

FAMILY = "Profile"
ATTRIBUTE_PREFIX = "attribute."


def _next_day_start(moment: dt.datetime) -> dt.datetime:
    return moment + dt.timedelta(days=1)


def column_q(lookup: str, kind: str, cond: Condition) -> Q:
    """A condition on one column (or a path to one) of Member, by kind and operator."""
    op, value = cond.op, cond.value
    if op == "empty":
        return (Q(**{lookup: ""}) | Q(**{f"{lookup}__isnull": True})) if kind in (
            "text", "choice") else Q(**{f"{lookup}__isnull": True})
    if op == "not_empty":
        return ~column_q(lookup, kind, Condition(cond.field, "empty", None, None, cond.now,
                                                 cond.path))
    if op == "eq":
        return Q(**{lookup: value})
    if op == "in":
        return Q(**{f"{lookup}__in": value})
    if op == "contains":
        return Q(**{f"{lookup}__icontains": value})
    if op == "starts_with":
        return Q(**{f"{lookup}__istartswith": value})
    if op == "range":
        low, high = value
        q = Q()
        if low is not None:
            q &= Q(**{f"{lookup}__gte": low})
        if high is not None:
            # A date as the upper end of a moment range means the whole of that day.
            q &= (Q(**{f"{lookup}__lt": _next_day_start(high)})
                  if kind == "moment" and high.time() == dt.time.min
                  else Q(**{f"{lookup}__lte": high}))
        return q
    if op == "in_last_days":
        return Q(**{f"{lookup}__gte": cond.since(value)})
    if op == "more_than_days_ago":
        return Q(**{f"{lookup}__lt": cond.since(value)})
    raise AssertionError(f"operator {op} reached column_q unparsed")


def _column(lookup: str, kind: str):  # noqa: ANN202 - a FieldSpec.compile
    return lambda cond, compiler: column_q(lookup, kind, cond)


def _member_choices(field: str):  # noqa: ANN202 - a FieldSpec.choices
    return lambda: list(Member._meta.get_field(field).choices)


def _tier_choices() -> list[tuple[str, str]]:
    return list(Tier.objects.order_by("rank").values_list("code", "name"))


# --- custom attributes ----------------------------------------------------------------------

_ATTRIBUTE_KINDS = {
    CustomAttribute.Type.STRING: ("text", TEXT_OPS),
    CustomAttribute.Type.INTEGER: ("number", NUMBER_OPS),
    CustomAttribute.Type.NUMBER: ("number", NUMBER_OPS),
    CustomAttribute.Type.BOOLEAN: ("boolean", BOOLEAN_OPS),
    CustomAttribute.Type.DATE: ("date", DATE_OPS),
    CustomAttribute.Type.CHOICE: ("choice", CHOICE_OPS),
}


def attribute_q(key: str, kind: str, cond: Condition) -> Q:
    """A condition on a custom attribute, stored as typed JSON under its key.

    A comparison is AND-ed with "has the key, and not as JSON null", so a member without a
    value never compares as NULL (a NOT around the condition then includes them, as it should)
    and never as jsonb's null, which orders below every number and string. The key is an
    explicit KeyTransform, not a `custom_attributes__<key>` path, so keys such as `in` or
    `exact` stay keys rather than lookups.
    """
    op, value = cond.op, cond.value
    # The wrapper gives the column its JSONField up front, so the lookups below prepare
    # their values as jsonb, as `custom_attributes__<key>__<lookup>` would.
    stored = KeyTransform(key, ExpressionWrapper(F("custom_attributes"), output_field=JSONField()))
    null = Q(lookup(stored, "exact", None))
    has_key = Q(custom_attributes__has_key=key)
    present = has_key & ~null
    empty = ~has_key | null
    if kind == "text":
        empty |= Q(lookup(stored, "exact", ""))
    if op == "empty":
        return empty
    if op == "not_empty":
        return ~empty
    if kind == "date":  # stored as ISO strings, which compare in date order
        value = (value.isoformat() if op == "eq"
                 else tuple(None if v is None else v.isoformat() for v in value))
    lookups = {"eq": "exact", "in": "in", "contains": "icontains",
               "starts_with": "istartswith"}
    if op in lookups:
        return present & Q(lookup(stored, lookups[op], value))
    low, high = value  # range
    q = present
    if low is not None:
        q &= Q(lookup(stored, "gte", low))
    if high is not None:
        q &= Q(lookup(stored, "lte", high))
    return q


def attribute_spec(attribute: CustomAttribute) -> FieldSpec:
    kind, ops = _ATTRIBUTE_KINDS[attribute.type]
    key = attribute.key
    choices = None
    if kind == "choice":
        options = [(str(choice), str(choice)) for choice in attribute.choices]
        choices = lambda: options  # noqa: E731
    return FieldSpec(
        key=ATTRIBUTE_PREFIX + key, label=attribute.label, family="Custom attributes",
        kind=kind, ops=ops, choices=choices,
        compile=lambda cond, compiler: attribute_q(key, kind, cond),
    )


def attribute_specs() -> list[FieldSpec]:
    return [attribute_spec(attribute) for attribute in CustomAttribute.objects.all()
            if "__" not in attribute.key]


# --- relative dates -------------------------------------------------------------------------

def _month_day(day: dt.date) -> int:
    return day.month * 100 + day.day


def birthday_q(cond: Condition, compiler: Any) -> Q:
    """Birthday (month and day of birth_date) from today to today + N days, across New Year.

    Compared as month*100+day, so 29 February counts between 28 February and 1 March.
    """
    n = cond.value
    known = Q(birth_date__isnull=False)
    if n >= 365:
        return known
    start = _month_day(cond.today)
    end = _month_day(cond.today + dt.timedelta(days=n))
    month_day = ExtractMonth("birth_date") * 100 + ExtractDay("birth_date")
    within = (Q(lookup(month_day, "gte", start)) & Q(lookup(month_day, "lte", end))
              if start <= end else
              Q(lookup(month_day, "gte", start)) | Q(lookup(month_day, "lte", end)))
    return known & within


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def age_q(cond: Condition, compiler: Any) -> Q:
    """Age in whole years today, from birth_date: range [low, high], either end open."""
    if cond.op in ("empty", "not_empty"):
        return column_q("birth_date", "date", cond)
    low, high = cond.value
    today = cond.today
    q = Q(birth_date__isnull=False)
    if low is not None:  # at least `low` years old: born on or before today - low years
        q &= Q(birth_date__lte=_years_before(today, low))
    if high is not None:  # younger than high + 1: born after today - (high + 1) years
        q &= Q(birth_date__gt=_years_before(today, high + 1))
    return q


def _parse_age(op: str, raw: Any) -> Any:
    if op in ("empty", "not_empty"):
        if raw is not None:
            raise RuleValueError(f"'{op}' takes no value")
        return None
    if not isinstance(raw, list) or len(raw) != 2 or raw == [None, None]:
        raise RuleValueError("must be [low, high] years with at least one end set")
    low, high = (None if v is None else parse_count(v, high=150) for v in raw)
    if low is not None and high is not None and low > high:
        raise RuleValueError("low must not be above high")
    return (low, high)


def _parse_days(op: str, raw: Any) -> int:
    return parse_count(raw, high=366)


def tier_since_q(cond: Condition, compiler: Any) -> Q:
    return column_q("loyalty_account__tier_since", "moment", cond)


def _text(key: str, label: str, ops: tuple[str, ...] = TEXT_OPS) -> FieldSpec:
    return FieldSpec(key=key, label=label, family=FAMILY, kind="text", ops=ops,
                     compile=_column(key, "text"))


FIELDS: list[FieldSpec] = [
    _text("external_id", "External id"),
    _text("first_name", "First name"),
    _text("last_name", "Last name"),
    _text("email", "Email"),
    _text("phone", "Phone (E.164)"),
    FieldSpec(key="gender", label="Gender", family=FAMILY, kind="choice", ops=CHOICE_OPS,
              compile=_column("gender", "choice"), choices=_member_choices("gender")),
    _text("language", "Language"),
    _text("timezone", "Time zone"),
    _text("city", "City"),
    _text("region", "Region"),
    _text("country", "Country (ISO code)"),
    _text("registration_source", "Registration source"),
    FieldSpec(key="status", label="Status", family=FAMILY, kind="choice", ops=CHOICE_OPS,
              compile=_column("status", "choice"), choices=_member_choices("status")),
    FieldSpec(key="birth_date", label="Birth date", family=FAMILY, kind="date", ops=DATE_OPS,
              compile=_column("birth_date", "date")),
    FieldSpec(key="registered_at", label="Registered", family=FAMILY, kind="moment",
              ops=MOMENT_OPS, compile=_column("registered_at", "moment")),
    FieldSpec(key="created_at", label="Added to Engage", family=FAMILY, kind="moment",
              ops=MOMENT_OPS, compile=_column("created_at", "moment")),
    FieldSpec(key="email_verified_at", label="Email confirmed", family=FAMILY, kind="moment",
              ops=MOMENT_OPS, compile=_column("email_verified_at", "moment")),
    FieldSpec(key="birthday", label="Birthday", family=FAMILY, kind="days",
              ops=("in_next_days",), compile=birthday_q, parse=_parse_days,
              help="Month and day of birth from today to today + N days (0 = today)."),
    FieldSpec(key="age", label="Age (years)", family=FAMILY, kind="years",
              ops=("range", "empty", "not_empty"), compile=age_q, parse=_parse_age),
    FieldSpec(key="tier", label="Tier", family="Loyalty", kind="choice", ops=CHOICE_OPS,
              compile=_column("loyalty_account__tier__code", "choice"), choices=_tier_choices),
    FieldSpec(key="tier_since", label="Tier reached", family="Loyalty", kind="moment",
              ops=MOMENT_OPS, compile=tier_since_q,
              help="When the member reached their current tier: 'in the last N days' is a "
                   "tier change since then."),
]
