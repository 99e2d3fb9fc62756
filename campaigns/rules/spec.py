"""What a condition may say: field specs, operators, and the parsing of their values.

A field spec names a field of the rule builder, the kind of value it compares, the operators it
accepts, and the function that turns a parsed condition into a `Q` over Member. The families
(`profile`, `purchases`, `places`, `reach`, `engagement`, `membership`) each declare theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

MAX_DAYS = 36_600  # a century: any window a marketer means, and no date arithmetic overflow

# Operators and the shape of the value each takes, for the builder and for errors.
OPERATORS: dict[str, str] = {
    "eq": "equals",
    "in": "is one of",
    "contains": "contains",
    "starts_with": "starts with",
    "empty": "is empty",
    "not_empty": "is not empty",
    "range": "between",
    "in_last_days": "in the last N days",
    "more_than_days_ago": "more than N days ago",
    "in_next_days": "within the next N days",
    "within_km": "within N km of",
    "any": "any of",
    "none": "none of",
    "mailing": "a mailing",
    "campaign": "any mailing of a campaign",
    "member_of": "is a member of",
    "not_member_of": "is not a member of",
    "reachable": "is reachable on",
}

TEXT_OPS = ("eq", "in", "contains", "starts_with", "empty", "not_empty")
CHOICE_OPS = ("eq", "in", "empty", "not_empty")
NUMBER_OPS = ("eq", "range", "empty", "not_empty")
DATE_OPS = ("eq", "range", "empty", "not_empty")
MOMENT_OPS = ("range", "in_last_days", "more_than_days_ago", "empty", "not_empty")
BOOLEAN_OPS = ("eq", "empty", "not_empty")
VALUELESS_OPS = frozenset({"empty", "not_empty"})


class RuleValueError(ValueError):
    """A condition's value (or `days`) that does not fit its field and operator."""


@dataclass(frozen=True)
class Condition:
    """A condition whose value has been parsed for its field and operator."""

    field: str
    op: str
    value: Any
    days: int | None
    now: dt.datetime
    path: str

    @property
    def today(self) -> dt.date:
        return timezone.localdate(self.now)

    def since(self, days: int | None = None) -> dt.datetime:
        return self.now - dt.timedelta(days=self.days if days is None else days)


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    family: str
    kind: str  # text, choice, number, integer, date, moment, boolean, or a family's own
    ops: Sequence[str]
    compile: Callable[[Condition, Any], Q]
    choices: Callable[[], list[tuple[str, str]]] | None = None
    windowed: bool = False  # accepts "days": the last N days the condition looks at
    parse: Callable[[str, Any], Any] | None = None  # (op, raw) -> value, for the family kinds
    help: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def lookup(lhs: Any, name: str, rhs: Any) -> Any:
    """The lookup `name` of an expression (`month * 100 + day >= 1223`), for conditions on
    computed values that have no field path to filter by."""
    return lhs.get_lookup(name)(lhs, rhs)


# --- scalar parsers -------------------------------------------------------------------------

def parse_text(raw: Any) -> str:
    if not isinstance(raw, str) or raw == "":
        raise RuleValueError("must be non-empty text")
    return raw


def parse_number(raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise RuleValueError("must be a number")
    if raw != raw or raw in (float("inf"), float("-inf")):
        raise RuleValueError("must be a finite number")
    return raw


def parse_integer(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise RuleValueError("must be a whole number")
    return raw


def parse_count(raw: Any, *, low: int = 0, high: int = MAX_DAYS) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise RuleValueError(f"must be a whole number from {low} to {high}")
    return raw


def _date_or_none(raw: str) -> dt.date | None:
    try:
        return parse_date(raw)
    except ValueError:  # well formed but no such day: 2025-13-01, 2025-02-30
        return None


def parse_day(raw: Any) -> dt.date:
    if isinstance(raw, str) and (day := _date_or_none(raw)) is not None:
        return day
    raise RuleValueError("must be a date (YYYY-MM-DD)")


def parse_moment(raw: Any) -> dt.datetime:
    """An ISO date-time, or a date meaning its midnight; naive means the program's zone."""
    if isinstance(raw, str):
        try:
            moment = parse_datetime(raw)
        except ValueError:
            moment = None
        if moment is None and (day := _date_or_none(raw)) is not None:
            moment = dt.datetime.combine(day, dt.time.min)
        if moment is not None:
            return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
    raise RuleValueError("must be an ISO date or date-time")


def parse_boolean(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise RuleValueError("must be true or false")
    return raw


SCALARS: dict[str, Callable[[Any], Any]] = {
    "text": parse_text, "choice": parse_text, "number": parse_number,
    "integer": parse_integer, "date": parse_day, "moment": parse_moment,
    "boolean": parse_boolean,
}


def parse_scalar_value(spec: FieldSpec, op: str, raw: Any) -> Any:
    """The value of a condition on a scalar kind (text … boolean), by operator."""
    scalar = SCALARS[spec.kind]
    if spec.kind == "choice" and spec.choices is not None and op in ("eq", "in"):
        known = {code for code, _ in spec.choices()}

        def scalar(raw: Any) -> str:  # noqa: F811 - the choice kind narrows the text parser
            text = parse_text(raw)
            if text not in known:
                raise RuleValueError(f"unknown value {text!r}; known: {', '.join(sorted(known))}")
            return text
    if op in VALUELESS_OPS:
        if raw is not None:
            raise RuleValueError(f"'{op}' takes no value")
        return None
    if op in ("eq", "contains", "starts_with"):
        return scalar(raw)
    if op == "in":
        if not isinstance(raw, list) or not raw:
            raise RuleValueError("must be a non-empty list")
        return [scalar(item) for item in raw]
    if op == "range":
        if not isinstance(raw, list) or len(raw) != 2 or raw == [None, None]:
            raise RuleValueError("must be [low, high] with at least one end set")
        low, high = (None if item is None else scalar(item) for item in raw)
        if low is not None and high is not None and low > high:
            raise RuleValueError("low must not be above high")
        return (low, high)
    # in_last_days, more_than_days_ago, in_next_days
    return parse_count(raw)
