"""The fault suite's shared vocabulary: a scenario and the figures it returns.

A scenario is a callable taking the size ("small" or "full") and returning the checker's counts
as a dict built by `result()`; it asserts nothing itself, the runner and the tests judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SIZES = ("small", "full")

# Every scenario reports these counts, so one JSON line per scenario reads the same for all.
COUNT_KEYS = (
    "audience",
    "sent",
    "unknown",
    "failed",
    "skipped",
    "duplicates",
    "lost",
    "unexpected",
)


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[str], dict[str, Any]]


def result(name: str, size: str, **counts: Any) -> dict[str, Any]:
    """The scenario's JSON line: the eight counts (0 when not given) first, then any extras."""
    line: dict[str, Any] = {"scenario": name, "size": size}
    for key in COUNT_KEYS:
        line[key] = int(counts.pop(key, 0) or 0)
    line.update(counts)
    return line


def is_clean(line: dict[str, Any]) -> bool:
    """The suite's promise: nothing duplicated, nothing lost."""
    return line.get("duplicates", 0) == 0 and line.get("lost", 0) == 0
