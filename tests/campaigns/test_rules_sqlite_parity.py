"""The demo runs on SQLite: the same trees must select the same members there as on
PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaigns import sqlite_parity

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.django_db
def test_every_family_selects_the_same_members_on_sqlite_and_postgresql(tmp_path):
    # given the same seeded data in a fresh SQLite database and in PostgreSQL
    env = {**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "ENGAGE_VAR_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "tests.campaigns.sqlite_parity"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    on_sqlite = json.loads(run.stdout)
    sqlite_parity.seed()
    # when every tree is evaluated on both
    on_postgresql = sqlite_parity.evaluate()
    # then each selects the same members, and none of them is trivially empty or everyone
    assert on_sqlite == on_postgresql
    sizes = {name: len(found) for name, found in on_postgresql.items()}
    assert all(0 < size < sqlite_parity.MEMBERS for size in sizes.values()), sizes
