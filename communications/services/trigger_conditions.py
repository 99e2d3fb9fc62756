"""A trigger's conditions on an event's payload: checked when the trigger is saved
(`conditions_errors`, each problem naming its condition), and compiled to SQL on the event
log (`conditions_sql`) for the reader's one statement per trigger.

A condition is {"path": "store.city", "op": "eq", "value": "Riga"}: the path goes into nested
objects with dots; numbers compare numerically, also against numbers the payload writes as
strings (the catalog's amounts, "12.50"), and a payload value that is no number never matches
a numeric comparison; strings compare as text; true, false and null as JSON. `ne` also holds
where the payload has no such value; `in` is any of a list; `exists` is true or false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

CONDITION_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")
PAYLOAD_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"


def conditions_errors(conditions: Any) -> list[str]:
    """What is wrong with a trigger's payload conditions, each naming the condition."""
    if not isinstance(conditions, list):
        return ["conditions must be a list of {path, op, value} objects"]
    problems = []
    for index, condition in enumerate(conditions):
        where = f"conditions[{index}]"
        if not isinstance(condition, dict):
            problems.append(f"{where}: must be an object with path, op and value")
            continue
        unknown = set(condition) - {"path", "op", "value"}
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        path, op = condition.get("path"), condition.get("op")
        if not isinstance(path, str) or not PAYLOAD_PATH.match(path):
            problems.append(f"{where}.path: a payload key, or keys joined by dots "
                            f"(store.city)")
        if op not in CONDITION_OPS:
            problems.append(f"{where}.op: one of {', '.join(CONDITION_OPS)}")
            continue
        if "value" not in condition and op != "exists":
            problems.append(f"{where}.value: required for {op}")
            continue
        value = condition.get("value", True)
        if op == "exists" and not isinstance(value, bool):
            problems.append(f"{where}.value: true or false for exists")
        elif op == "in" and (not isinstance(value, list) or not value or not all(
                _scalar(item) for item in value)):
            problems.append(f"{where}.value: a non-empty list of strings or numbers for in")
        elif op in ("gt", "gte", "lt", "lte") and not (_number(value)
                                                        or isinstance(value, str)):
            problems.append(f"{where}.value: a number (or a string, compared as text) for {op}")
        elif op in ("eq", "ne") and not (_scalar(value) or isinstance(value, bool)
                                         or value is None):
            problems.append(f"{where}.value: a string, number, true, false or null for {op}")
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value: Any) -> bool:
    return isinstance(value, str) or _number(value)


def conditions_sql(conditions: Sequence[dict[str, Any]], *,
                   alias: str) -> tuple[list[str], list[Any]]:
    """The payload conditions of a trigger as SQL on the event `alias`: (one boolean
    expression per condition, their parameters in order). Conditions are checked by
    `conditions_errors` before they get here."""
    sqls: list[str] = []
    params: list[Any] = []
    for condition in conditions:
        path = condition["path"].split(".")
        op, value = condition["op"], condition.get("value", True)
        if op == "exists":
            sqls.append(f"({alias}.payload #> %s) IS {'NOT ' if value else ''}NULL")
            params.append(path)
            continue
        values = value if op == "in" else [value]
        parts = []
        for item in values:
            sql, item_params = _compare_sql(alias=alias, path=path,
                                            op="eq" if op == "in" else op, value=item)
            parts.append(sql)
            params += item_params
        sqls.append("(" + " OR ".join(parts) + ")")
    return sqls, params


_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _compare_sql(*, alias: str, path: list[str], op: str, value: Any) -> tuple[str, list[Any]]:
    """One comparison of the payload value at `path` with `value`: numbers numerically
    (a payload value that is no number never matches), strings as text, true, false and null
    as JSON. `ne` also holds where the payload has no such value."""
    if _number(value):
        number = (f"CASE WHEN jsonb_typeof({alias}.payload #> %s) IN ('number', 'string') "
                  f"AND ({alias}.payload #>> %s) ~ %s THEN ({alias}.payload #>> %s)::numeric END")
        sql, params = f"{number} {_COMPARE[op]} %s", [path, path, _NUMBER, path, value]
    elif isinstance(value, str):
        sql, params = f"({alias}.payload #>> %s) {_COMPARE[op]} %s", [path, value]
    else:
        sql, params = f"({alias}.payload #> %s) = %s::jsonb", [path, json.dumps(value)]
        if op == "ne":
            return f"NOT coalesce({sql}, false)", params
        return sql, params
    if op == "ne":
        return f"coalesce({sql}, true)", params
    return sql, params
