"""Conditions on membership: of another target group (its rules inlined) or of a static list."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q

from campaigns.models import StaticList, StaticListMember
from campaigns.rules.spec import Condition, FieldSpec, RuleValueError


def _parse_id(op: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise RuleValueError("must be the id of a target group or list")
    return raw


def target_group_q(cond: Condition, compiler: Any) -> Q:
    """The other group's tree, compiled into this query (so the whole is planned as one)."""
    q = compiler.target_group_q(cond.value, cond.path)
    return q if cond.op == "member_of" else ~q


def static_list_q(cond: Condition, compiler: Any) -> Q:
    if not StaticList.objects.filter(pk=cond.value).exists():
        raise RuleValueError(f"no static list with id {cond.value}")
    listed = Exists(StaticListMember.objects.filter(static_list_id=cond.value,
                                                    member=OuterRef("pk")))
    return Q(listed) if cond.op == "member_of" else ~listed


FIELDS: list[FieldSpec] = [
    FieldSpec(key="target_group", label="Target group", family="Membership", kind="target_group",
              ops=("member_of", "not_member_of"), compile=target_group_q, parse=_parse_id),
    FieldSpec(key="static_list", label="Static list", family="Membership", kind="static_list",
              ops=("member_of", "not_member_of"), compile=static_list_q, parse=_parse_id),
]
