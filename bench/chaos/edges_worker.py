"""A real `celery worker --beat` on this database and broker that a scenario can kill -9 and
start again, as an operator's crash would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database this process uses (under pytest: the test database)."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}")


class KillableWorker:
    """`start()`, `kill()` (SIGKILL to the whole process group), `stop()`; `env` extends the
    worker's environment (short ticks, timeouts)."""

    def __init__(self, *, env: dict[str, str], pool: str = "solo") -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="engage-chaos-worker-"))
        self.log_path = self._dir / "worker.log"
        self.env = {**os.environ, "DATABASE_URL": database_url(), "CONN_MAX_AGE": "0",
                    "ENGAGE_VAR_DIR": str(self._dir), **env}
        self.pool = pool
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> KillableWorker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--beat",
             f"--pool={self.pool}", "--loglevel=WARNING",
             f"--schedule={self._dir / 'beat-schedule'}", "--without-mingle",
             "--without-gossip"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1
        # The beat's schedule file may be left mid-write by the kill.
        for leftover in self._dir.glob("beat-schedule*"):
            leftover.unlink()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no worker log)"


def wait_for(predicate, *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
