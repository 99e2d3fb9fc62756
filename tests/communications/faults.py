"""Processes the fault tests break on purpose: real Celery workers and a private Redis.

`WorkerProcess` is `celery worker --beat` as an operator runs it, in its own process group so
that `kill()` takes the worker and its beat child down together with SIGKILL, as a crashed
node would go. `RedisServer` is a `redis-server` on a free port without persistence, so a
restart comes back empty, the way a broker without AOF or RDB does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_ID = re.compile(r"<engage\.(\d+)\.\d+@")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def message_ids(header_values: Iterable[str]) -> Counter[int]:
    """Engage message ids, counted, from the Message-ID headers a peer received."""
    found: Counter[int] = Counter()
    for value in header_values:
        match = MESSAGE_ID.search(str(value))
        assert match, f"a message the peer received carries no Engage Message-ID: {value!r}"
        found[int(match.group(1))] += 1
    return found


class WorkerProcess:
    """One `celery worker --beat --pool=solo` on the test database; restartable."""

    def __init__(self, *, env: dict[str, str], log_dir: Path, name: str = "worker") -> None:
        self.env = env
        self.log_dir = log_dir
        self.name = name
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        # A fresh beat schedule each start: a beat killed mid-write may leave its file broken.
        schedule = self.log_dir / f"{self.name}-beat-{self.starts}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker",
                 "--beat", "--pool=solo", "--loglevel=INFO", f"--schedule={schedule}",
                 "--without-mingle", "--without-gossip", "-n", f"{self.name}-{self.starts}@%h"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL to the worker and its beat child: no warm shutdown, no ack, no cleanup."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass
        # The beat child of a worker that went first.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def assert_running(self) -> None:
        """Fail at once, with the worker's last words, when it exited on its own."""
        if self.process is not None and self.process.poll() is not None:
            tail = "\n".join(self.output().splitlines()[-30:])
            raise AssertionError(f"the worker exited ({self.process.returncode}):\n{tail}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class RedisServer:
    """A private `redis-server` on a free port, no RDB, no AOF: a restart loses everything."""

    def __init__(self, *, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        with (self.log_dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.log_dir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def keys(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
            conn.sendall(b"DBSIZE\r\n")
            return int(conn.recv(64).strip().lstrip(b":"))

