"""Target-group rules: a validated JSON tree that compiles to one queryset over members.

`tree` holds the grammar and the compiler, `spec` the operators and value parsing, `catalog`
the registry of fields, and one module per family of conditions. docs/target-groups.md is the
marketer's reference to every field and operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from campaigns.rules.catalog import catalog, field_keys, fields_register
from campaigns.rules.tree import rules_compile
from members.models import Member

__all__ = ["catalog", "field_keys", "fields_register", "rules_compile", "rules_error_lines",
           "rules_members", "rules_validate"]


def rules_validate(tree: Any, *, target_group: Any = None) -> None:
    """Raise ValidationError naming every bad path; `target_group` is the group being saved,
    so a reference back to it is refused as a cycle."""
    rules_compile(tree, target_group_id=getattr(target_group, "pk", None))


def rules_members(tree: Any, *, now: dt.datetime | None = None,
                  target_group_id: int | None = None) -> QuerySet[Member]:
    """The members a tree selects; `target_group_id` is the group it belongs to, if any (a
    reference back to it is a cycle)."""
    return Member.objects.filter(
        rules_compile(tree, now=now, target_group_id=target_group_id))


def rules_error_lines(error: ValidationError) -> list[str]:
    """A tree's errors as 'path: message' lines (a message about the whole tree unprefixed),
    for places that show them as one field's errors: forms, the API, the admin."""
    return [message if path == "rules" else f"{path}: {message}"
            for path, messages in error.message_dict.items() for message in messages]
