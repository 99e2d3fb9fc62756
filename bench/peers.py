"""The loopback peers of the benchmarks, each in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.workers import ROOT
from communications.gateways import OutboundMessage
from communications.gateways.base import BaseGateway


class PeerProcess:
    """`python -m tests.peers.<module>` in its own process (sharing the sender's GIL would
    measure the wrong thing), for a `with` block; `settings` are the gateway settings it wrote.

    What it counted: `stats()` asks an HTTP peer (`GET /_peer/stats` on the address in the
    setting `url_setting`) while it runs; a peer started with `stats_out` (the SMSC) writes
    them to a file when it stops, read into `final_stats`.

    A peer that is not a Python module (the Node.js APNs peer) comes with `command`: given the
    peer's own folder, where it may first write the files the peer needs, it returns the
    command line, to which `--settings-out F` is added.
    """

    def __init__(self, module: str, *, url_setting: str = "", stats_out: bool = False,
                 command: Callable[[Path], Sequence[str]] | None = None) -> None:
        self.module = module
        self.command = command
        self.url_setting = url_setting
        self._dir = tempfile.TemporaryDirectory(prefix=f"engage-{module}-peer-")
        self._settings_path = Path(self._dir.name) / "gateway.json"
        self._stats_path = Path(self._dir.name) / "stats.json" if stats_out else None
        self.process: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, Any] = {}
        self.final_stats: dict[str, int] = {}

    def __enter__(self) -> PeerProcess:
        command = (self.command(Path(self._dir.name)) if self.command is not None
                   else [sys.executable, "-m", f"tests.peers.{self.module}"])
        self.process = subprocess.Popen(
            [*command, "--settings-out", str(self._settings_path),
             *(["--stats-out", str(self._stats_path)] if self._stats_path else [])],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not self._settings_path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.module} peer exited: "
                                   f"{self.process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the {self.module} peer did not listen within 30 s")
            time.sleep(0.05)
        self.settings = json.loads(self._settings_path.read_text())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stats_path is not None and self._stats_path.exists():
            self.final_stats = json.loads(self._stats_path.read_text())
        self._dir.cleanup()

    def stats(self) -> dict[str, int]:
        """The peer's counters. A peer may do its deferred work first (the Web Push peer's
        browser decrypts a whole run's pushes: seconds), hence the long wait.

        Raises when it counts pushes it took that its browser could not decrypt, or has not
        decrypted all it took."""
        parts = urlsplit(str(self.settings[self.url_setting]))
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/_peer/stats",
                                    timeout=300) as reply:  # noqa: S310  (the loopback peer)
            stats = json.loads(reply.read())
        taken = stats.get("accepted")
        if stats.get("undecryptable") or stats.get("decrypted", taken) != taken:
            raise RuntimeError(f"the {self.module} peer's browser could not read every push "
                               f"it took: {stats}")
        return stats


def batch_rate(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> float:
    """Messages/s of one batch through an adapter in this process (no workers, no database),
    from open to the last answer; raises unless every message was accepted."""
    gateway.open()
    try:
        start = time.perf_counter()
        results = gateway.send(batch)
        seconds = time.perf_counter() - start
    finally:
        gateway.close()
    failed = [result for result in results if not result.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} messages failed, the first: {failed[0].error}")
    return len(batch) / seconds
