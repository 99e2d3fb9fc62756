"""The fault suite (issue 10): scenarios that break the system on purpose and report figures.

`python -m bench.chaos` runs them; `registry()` lists them. The scenario modules import Django
models, so they are imported when asked for, after `django.setup()`.
"""

from __future__ import annotations

import sys

from bench.chaos.core import Scenario


def registry() -> list[Scenario]:
    """The pipeline scenarios, then the edge scenarios (bench/chaos/edges.py, written beside
    these; skipped with a note while it does not exist)."""
    from bench.chaos import pipeline

    scenarios = list(pipeline.SCENARIOS)
    try:
        from bench.chaos import edges
    except ImportError as exc:
        if exc.name != "bench.chaos.edges":
            raise
        print(f"chaos: edge scenarios skipped ({exc})", file=sys.stderr, flush=True)
    else:
        scenarios.extend(edges.SCENARIOS)
    return scenarios
