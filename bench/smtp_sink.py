"""Postfix's smtp-sink on loopback, and a bare smtplib client to find its ceiling.

smtp-sink (C, Debian package `postfix`) accepts and discards mail far faster than our pipeline
sends it, so a dispatch benchmark measures Engage, not the peer (aiosmtpd tops out near 880
messages/s here and burns a core doing it; see DESIGN.md "Benchmarks").
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
INSTALL_HINT = "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"


def smtp_sink_path() -> str | None:
    found = shutil.which("smtp-sink")
    if found:
        return found
    return next((p for p in SMTP_SINK_PATHS if Path(p).is_file()), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    """`smtp-sink 127.0.0.1:<port> 1000` as a child process, for a `with` block."""

    host = "127.0.0.1"

    def __init__(self, *, backlog: int = 1000) -> None:
        path = smtp_sink_path()
        if path is None:
            raise RuntimeError(f"smtp-sink is not installed; as root: {INSTALL_HINT}")
        self.port = _free_port()
        self._command = [path]
        if os.geteuid() == 0:
            # smtp-sink refuses to run as root; it drops to this user after binding the socket.
            self._command += ["-u", "nobody"]
        self._command += [f"{self.host}:{self.port}", str(backlog)]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"smtp-sink exited: {self._process.stderr.read().decode()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"smtp-sink did not listen on {self.host}:{self.port}")

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def gateway_settings(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "timeout": 30}


def bare_client_rate(*, host: str, port: int, messages: int) -> float:
    """Messages/s that one plain smtplib session pushes into the server: the ceiling.

    The messages are small and built once, so nothing but the SMTP dialogue is measured.
    """
    body = (
        b"From: Engage Club <club@engage.example.com>\r\nTo: member@members.example.com\r\n"
        b"Subject: Hello\r\nMessage-ID: <ceiling@engage.invalid>\r\n\r\nHello, member.\r\n"
    )
    recipients = [[f"m{i:08d}@members.example.com"] for i in range(messages)]
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo()
        start = time.perf_counter()
        for to in recipients:
            client.sendmail("club@engage.example.com", to, body)
        elapsed = time.perf_counter() - start
    return messages / elapsed
