"""Real Celery workers as subprocesses, and the memory of their process tree.

The workers are the ones an operator runs (`celery -A config worker --pool=prefork`), with the
bench environment, so a dispatch benchmark measures the production path: Redis, PostgreSQL,
prefork children, persistent connections.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
CELERY = Path(sys.executable).parent / "celery"


class CeleryWorkers:
    """One `celery worker` (prefork, `concurrency` children) for a `with` block.

    Entering returns once the worker answers a ping; leaving stops it warm (SIGTERM), then kills
    what is left of its tree.
    """

    def __init__(self, *, concurrency: int = 2, queue: str | None = None) -> None:
        # Every queue the settings declare (the default one and each channel's dispatch).
        queue = queue or ",".join(q.name for q in celery_app.conf.task_queues)
        self.nodename = f"bench-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
        self.log_path = Path(tempfile.gettempdir()) / f"engage-bench-worker-{os.getpid()}.log"
        self._command = [
            str(CELERY), "-A", "config", "worker", f"--concurrency={concurrency}",
            "--pool=prefork", "-Q", queue, "-n", self.nodename, "--loglevel=WARNING",
            "--without-mingle", "--without-gossip",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CeleryWorkers:
        # The broker is the bench's alone: tasks left in it by an earlier run (or, in the
        # smoke tests, by other tests on the same Redis database) are not this run's work.
        celery_app.control.purge()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self._command, cwd=ROOT, env=os.environ.copy(),
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited at start:\n{self.log_tail()}")
            if celery_app.control.ping(destination=[self.nodename], timeout=0.5):
                return self
        self.__exit__()
        raise RuntimeError(f"celery worker did not answer a ping in 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        tree = self.processes()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for process in tree:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait()

    def processes(self) -> list[psutil.Process]:
        """The worker and its pool children."""
        try:
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no worker log)"


class PeakRss:
    """Samples the summed RSS of a worker's process tree every `interval` s in a thread."""

    def __init__(self, workers: CeleryWorkers, *, interval: float = 0.2) -> None:
        self._workers = workers
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_bytes = 0
        self.samples = 0

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in self._workers.processes():
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass  # a pool child was just replaced; the next sample sees its successor
            self.peak_bytes = max(self.peak_bytes, total)
            self.samples += 1
            self._stop.wait(self._interval)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20
