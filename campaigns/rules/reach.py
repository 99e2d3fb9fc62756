"""Conditions on reachability: may the member be sent marketing on a channel, and to where."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from campaigns.rules.spec import Condition, FieldSpec, RuleValueError
from members.models import Channel
from members.selectors import member_reachable


def reachable_q(cond: Condition, compiler: Any) -> Q:
    return member_reachable(channel=cond.value)


def _parse_channel(op: str, raw: Any) -> str:
    if raw not in Channel.values:
        raise RuleValueError(f"must be one of {', '.join(Channel.values)}")
    return raw


FIELDS: list[FieldSpec] = [
    FieldSpec(key="reachable", label="Reachable on", family="Reachability", kind="channel",
              ops=("reachable",), compile=reachable_q, parse=_parse_channel,
              choices=lambda: list(Channel.choices),
              help="Active, marketing consent on the channel, and an address for it that is "
                   "not suppressed (a confirmed email where double opt-in applies)."),
]
