from __future__ import annotations

from django.db.models import QuerySet

from campaigns.models import TargetGroup
from campaigns.rules import rules_members
from members.models import Member


def target_group_members(*, target_group: TargetGroup) -> QuerySet[Member]:
    """The members a target group selects, as one lazily evaluated queryset."""
    return rules_members(target_group.rules)


def target_group_size(*, target_group: TargetGroup) -> int:
    return target_group_members(target_group=target_group).count()
