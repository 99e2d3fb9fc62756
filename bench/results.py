"""One JSON line per scenario, and the median of repeated runs."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Measured:
    """What one scenario measured: `value` is the median of `runs`, `n` the data size.

    `extra` holds scenario-specific keys (what exactly was measured, per-run figures); they
    follow the six fixed keys, so every line starts the same way.
    """

    n: int
    value: float | None
    runs: int
    extra: dict[str, Any] = field(default_factory=dict)


def result_line(*, scenario: str, unit: str, target: float | None, measured: Measured) -> str:
    """The scenario's JSON line: scenario, n, value, unit, target, runs, then any extras."""
    value = None if measured.value is None else round(measured.value, 3)
    return json.dumps({
        "scenario": scenario, "n": measured.n, "value": value, "unit": unit, "target": target,
        "runs": measured.runs, **measured.extra,
    })


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds of one call, and what it returned."""
    start = time.perf_counter()
    returned = call()
    return time.perf_counter() - start, returned


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Run `measure` `runs` times; the median and every run's figure (rounded, for the line)."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), [round(v, 3) for v in values]
