"""A real SMTP server on loopback (aiosmtpd) that records what it was sent.

Recipients listed in `refuse` get `550 5.1.1` at RCPT time, the way a relay refuses an unknown
mailbox, so tests can check that one refusal fails only that message. Recipients listed in `drop`
make the peer cut the connection once the message's data has arrived, before it answers (a relay
crashing mid-DATA): the sender cannot know whether it was taken, and the peer records nothing.

With `log_path`, every accepted submission is also appended to that file as a JSON line
(`message_id`, `rcpt`, `at`), flushed at once, so the fault suite's checker can join what the
peer really received with the database; `keep_messages=False` keeps only that log and the
count, not the parsed messages (a 100k-message run would hold them all in memory).
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import IO

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class RecordingHandler:
    refuse: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    sessions: int = 0
    accepted: int = 0
    dropped: int = 0
    keep_messages: bool = True
    log: IO[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop.intersection(envelope.rcpt_tos):
            with self.lock:
                self.dropped += 1
            # No reply at all: the client is left not knowing whether the message was taken.
            server.transport.abort()
            return "421 4.3.0 connection dropped"  # never reaches the aborted transport
        # Headers alone when the messages are not kept: parsing the bodies would cap the peer.
        parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            envelope.content, headersonly=not self.keep_messages)
        with self.lock:
            self.accepted += 1
            if self.keep_messages:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                              parsed))
            if self.log is not None:
                self.log.write(json.dumps({"message_id": parsed["Message-ID"] or "",
                                           "rcpt": list(envelope.rcpt_tos),
                                           "at": time.time()}) + "\n")
                self.log.flush()
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpPeer:
    # Subclasses that build their own handler (a throttling peer) skip __init__: no log then.
    log_path: Path | None = None

    def __init__(self, *, log_path: Path | str | None = None, keep_messages: bool = True,
                 drop: set[str] | None = None) -> None:
        self.log_path = Path(log_path) if log_path is not None else None
        self.handler = RecordingHandler(keep_messages=keep_messages, drop=set(drop or ()))
        # aiosmtpd's readiness probe connects to the configured port, so it cannot be 0.
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpPeer:
        if self.log_path is not None:
            self.handler.log = self.log_path.open("a", encoding="utf-8")
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        if self.handler.log is not None:
            with self.handler.lock:
                self.handler.log.close()
                self.handler.log = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def gateway_settings(self) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "timeout": 5}
