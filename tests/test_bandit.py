"""Bandit, the security linter, finds nothing of medium severity or above in Engage's code.

Its configuration is pyproject.toml's [tool.bandit] (the one justified skip is there); a
reviewed false positive carries `# nosec Bxxx` on its line with the reason beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["config", "members", "loyalty", "campaigns", "communications", "manage.py"]


def test_bandit_finds_nothing_of_medium_severity_or_above():
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-r", *SCANNED,
         "--severity-level", "medium", "--format", "json", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)

    report = json.loads(result.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
                for r in report["results"]]
    assert findings == [] and report["errors"] == []
    assert report["metrics"]["_totals"]["loc"] > 10_000  # the code was scanned, not skipped
