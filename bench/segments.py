"""segment_count: how long a marketer waits for a target group's size."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from bench.options import Options
from bench.results import Measured, median_of, timed
from campaigns.models import TargetGroup
from campaigns.selectors import target_group_size
from members.models import Member

# DESIGN.md asks for 3 field rules + 1 purchase rule. The rule engine has no purchase rule yet,
# so this group has 3 field rules + tier + consent; the purchase rule joins it with its issue.
# The demo members joined over the last three years, so the date is relative to now.
WHAT = ("target_group_size over 3 field rules (language in, timezone in, created_at in the last "
        "2 years) + tier in + email consent; no purchase rule (not in the rule engine yet)")


def segment_rules() -> list[dict[str, Any]]:
    joined_since = (timezone.now() - timedelta(days=2 * 365)).date().isoformat()
    return [
        {"field": "language", "op": "in", "value": ["en", "de", "fr"]},
        {"field": "timezone", "op": "in",
         "value": ["Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York"]},
        {"field": "created_at", "op": "range", "value": [joined_since, None]},
        {"field": "tier", "op": "in", "value": ["silver", "gold", "platinum"]},
        {"field": "consent", "op": "has", "value": "email"},
    ]


def segment_count(options: Options) -> Measured:
    """Seconds for `target_group_size` of a 5-rule group over every seeded member."""
    group, _ = TargetGroup.objects.update_or_create(
        name="bench segment_count", defaults={"rules": segment_rules()})
    sizes: list[int] = []

    def measure() -> float:
        seconds, size = timed(lambda: target_group_size(target_group=group))
        sizes.append(size)
        return seconds

    value, per_run = median_of(options.runs, measure)
    return Measured(Member.objects.count(), value, options.runs,
                    {"what": WHAT, "count": sizes[-1], "per_run": per_run})
