"""The rule tree: nested AND / OR / NOT groups of conditions, compiled to one `Q` over Member.

    {"and": [node, ...]}   every node matches
    {"or":  [node, ...]}   at least one node matches
    {"not": node}          the node does not match
    {"field": "orders_count", "op": "range", "value": [2, null], "days": 90}   a condition

The root may also be a list (AND of its nodes), or `{}` / `[]` for every member. Every error
names its path in the tree (`rules.and[1].or[0].value`) and all errors are reported at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from campaigns.rules.catalog import field_keys, field_spec
from campaigns.rules.spec import (
    MAX_DAYS,
    Condition,
    FieldSpec,
    RuleValueError,
    parse_count,
    parse_scalar_value,
)

MAX_DEPTH = 12
MAX_CONDITIONS = 200
GROUP_KEYS = ("and", "or", "not")
CONDITION_KEYS = frozenset({"field", "op", "value", "days"})


class Compiler:
    """Compiles one tree; collects every error with its path instead of stopping at the first."""

    def __init__(self, *, now: dt.datetime | None = None,
                 target_group_id: int | None = None) -> None:
        self.now = now or timezone.now()
        self.errors: dict[str, list[str]] = {}
        self.conditions = 0
        # The chain of target groups being compiled, to refuse a cycle of references.
        self.chain: list[tuple[int, str]] = []
        if target_group_id is not None:
            self.chain.append((target_group_id, "this group"))

    def error(self, path: str, message: str) -> Q:
        self.errors.setdefault(path, []).append(message)
        return Q()

    def root(self, tree: Any, path: str = "rules") -> Q:
        if tree in ({}, [], None):
            # Every member, said explicitly: a group referring to this one may negate it,
            # and an empty Q() would stay "no condition" under a NOT instead of "nobody".
            return Q(pk__isnull=False)
        if isinstance(tree, list):
            return self.group("and", tree, f"{path}", depth=1)
        return self.node(tree, path, depth=1)

    def node(self, node: Any, path: str, depth: int) -> Q:
        """`depth` counts the groups down to and including this node, were it one."""
        if not isinstance(node, dict):
            return self.error(path, "must be a group ({\"and\": [...]}, {\"or\": [...]}, "
                                    "{\"not\": ...}) or a condition ({\"field\", \"op\", ...})")
        groups = [key for key in GROUP_KEYS if key in node]
        if groups:
            if depth > MAX_DEPTH:
                return self.error(path, f"groups nest at most {MAX_DEPTH} deep")
            if len(node) != 1:
                return self.error(path, "a group has exactly one key: and, or or not")
            kind = groups[0]
            if kind == "not":
                return ~self.node(node["not"], f"{path}.not", depth + 1)
            return self.group(kind, node[kind], f"{path}.{kind}", depth)
        return self.condition(node, path)

    def group(self, kind: str, nodes: Any, path: str, depth: int) -> Q:
        if not isinstance(nodes, list) or not nodes:
            return self.error(path, "must be a non-empty list of rules")
        compiled = [self.node(child, f"{path}[{index}]", depth + 1)
                    for index, child in enumerate(nodes)]
        q = compiled[0]
        for child in compiled[1:]:
            q = q & child if kind == "and" else q | child
        return q

    def condition(self, node: dict[str, Any], path: str) -> Q:
        self.conditions += 1
        if self.conditions == MAX_CONDITIONS + 1:
            self.error(path, f"a tree holds at most {MAX_CONDITIONS} conditions")
        unknown = set(node) - CONDITION_KEYS
        if unknown:
            return self.error(path, f"unknown keys: {', '.join(sorted(unknown))}")
        key = node.get("field")
        spec = field_spec(key) if isinstance(key, str) else None
        if spec is None:
            return self.error(f"{path}.field",
                              f"unknown field {key!r}; known: {', '.join(field_keys())}")
        op = node.get("op")
        if op not in spec.ops:
            return self.error(f"{path}.op", f"operator {op!r} does not apply to {spec.key}; "
                                            f"use one of {', '.join(spec.ops)}")
        days = node.get("days")
        if days is not None:
            if not spec.windowed:
                return self.error(f"{path}.days", f"{spec.key} takes no window")
            try:
                days = parse_count(days, low=1, high=MAX_DAYS)
            except RuleValueError as exc:
                return self.error(f"{path}.days", str(exc))
        try:
            value = self.value(spec, op, node.get("value"))
            return spec.compile(Condition(spec.key, op, value, days, self.now, path), self)
        except RuleValueError as exc:
            return self.error(f"{path}.value", str(exc))

    def value(self, spec: FieldSpec, op: str, raw: Any) -> Any:
        if spec.parse is not None:
            return spec.parse(op, raw)
        return parse_scalar_value(spec, op, raw)

    def target_group_q(self, target_group_id: int, path: str) -> Q:
        """Another group's tree, inlined; a reference back into the chain is a cycle."""
        from campaigns.models import TargetGroup

        group = TargetGroup.objects.filter(pk=target_group_id).values("name", "rules").first()
        if group is None:
            raise RuleValueError(f"no target group with id {target_group_id}")
        names = [name for _, name in self.chain]
        if any(pk == target_group_id for pk, _ in self.chain):
            cycle = " → ".join([*names, group["name"]])
            raise RuleValueError(f"target groups refer to each other in a cycle: {cycle}")
        self.chain.append((target_group_id, group["name"]))
        inner = Compiler(now=self.now)
        inner.chain = self.chain
        q = inner.root(group["rules"], path=f"target group {group['name']!r}")
        self.chain.pop()
        if inner.errors:
            first_path, messages = next(iter(inner.errors.items()))
            raise RuleValueError(f"{first_path}: {messages[0]}")
        return q


def rules_compile(tree: Any, *, now: dt.datetime | None = None,
                  target_group_id: int | None = None) -> Q:
    """The tree as one `Q` over Member; raises ValidationError keyed by the bad paths."""
    compiler = Compiler(now=now, target_group_id=target_group_id)
    q = compiler.root(tree)
    if compiler.errors:
        raise ValidationError(compiler.errors)
    return q
