"""A real SMPP 3.4 SMSC on loopback that records what it was sent.

Its PDU codec is written here from the specification rather than taken from smpplib: the
adapter builds its PDUs with smpplib, and a peer on the same library would agree with it even
where both are wrong. So is its GSM 03.38 table, for the same reason.

Besides accepting submits, it can be told to throttle the next N submits, refuse a
destination, drop the connection without answering, answer late (to watch the client's window),
and send deliver_sm to the bound client: delivery receipts, a member's reply, enquire_link.
"""

from __future__ import annotations

import itertools
import queue
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

GENERIC_NACK = 0x80000000
BIND_TRANSCEIVER, BIND_TRANSCEIVER_RESP = 0x00000009, 0x80000009
SUBMIT_SM, SUBMIT_SM_RESP = 0x00000004, 0x80000004
DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
UNBIND, UNBIND_RESP = 0x00000006, 0x80000006
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x00000015, 0x80000015
MESSAGE_STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5,
                  "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}
COMMAND_NAMES = {GENERIC_NACK: "generic_nack", DELIVER_SM_RESP: "deliver_sm_resp",
                 ENQUIRE_LINK_RESP: "enquire_link_resp"}

ESME_ROK, ESME_RINVCMDID, ESME_RINVBNDSTS = 0x00, 0x03, 0x04
ESME_RINVDSTADR, ESME_RINVPASWD, ESME_RINVSYSID = 0x0B, 0x0E, 0x0F
ESME_RMSGQFUL, ESME_RTHROTTLED = 0x14, 0x58

# GSM 03.38 default alphabet by code (0x1B, the escape, as "\x1b") and its extension table.
GSM7 = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                  0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}


def gsm7_decode(data: bytes) -> str:
    out, octets = [], iter(data)
    for octet in octets:
        if octet == 0x1B:
            out.append(GSM7_EXTENSION[next(octets)])
        else:
            out.append(GSM7[octet])
    return "".join(out)


def gsm7_encode(text: str) -> bytes:
    extension = {char: code for code, char in GSM7_EXTENSION.items()}
    return b"".join(bytes((0x1B, extension[char])) if char in extension
                    else bytes((GSM7.index(char),)) for char in text)


@dataclass(frozen=True)
class Bind:
    system_id: str
    password: str
    system_type: str
    status: int


@dataclass(frozen=True)
class Submit:
    """One submit_sm as the SMSC read it; `status` None when it was never answered."""

    sequence: int
    status: int | None
    message_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    udh: bytes
    # (reference, parts, this part's number) from a concatenation header
    concat: tuple[int, int, int] | None
    text: str
    received_at: datetime


@dataclass(frozen=True)
class Ack:
    """The client's answer to something the SMSC sent (deliver_sm, enquire_link)."""

    command: str
    sequence: int
    status: int


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def cstring(self) -> str:
        end = self.body.index(b"\0", self.pos)
        value, self.pos = self.body[self.pos:end].decode("latin-1"), end + 1
        return value

    def octet(self) -> int:
        self.pos += 1
        return self.body[self.pos - 1]

    def octets(self, count: int) -> bytes:
        self.pos += count
        return self.body[self.pos - count:self.pos]


def _cstring(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"


def _pdu(command: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command, status, sequence) + body


def _submit_decode(body: bytes) -> dict:
    r = _Reader(body)
    r.cstring()  # service_type
    fields = {"source_addr_ton": r.octet(), "source_addr_npi": r.octet(),
              "source_addr": r.cstring(), "dest_addr_ton": r.octet(),
              "dest_addr_npi": r.octet(), "destination_addr": r.cstring(),
              "esm_class": r.octet()}
    r.octet(), r.octet()  # protocol_id, priority_flag
    r.cstring(), r.cstring()  # schedule_delivery_time, validity_period
    fields["registered_delivery"] = r.octet()
    r.octet()  # replace_if_present_flag
    fields["data_coding"] = r.octet()
    r.octet()  # sm_default_msg_id
    message = r.octets(r.octet())
    udh, concat = b"", None
    if fields["esm_class"] & 0x40:
        udh, message = message[:1 + message[0]], message[1 + message[0]:]
        if udh[1:3] == b"\x00\x03":
            concat = (udh[3], udh[4], udh[5])
    coding = fields["data_coding"]
    text = (gsm7_decode(message) if coding == 0 else message.decode("utf-16-be")
            if coding == 8 else message.decode("latin-1"))
    return {**fields, "short_message": message, "udh": udh, "concat": concat, "text": text}


class _Session:
    """One client connection: the handler thread reads, a writer thread answers in order."""

    def __init__(self, peer: SmppPeer, sock: socket.socket) -> None:
        self.peer, self.sock = peer, sock
        self.outbox: queue.Queue[tuple[float, bytes, bool] | None] = queue.Queue()
        self.bound = False
        self.outstanding = 0
        self.writer = threading.Thread(target=self._write_loop, daemon=True)

    def serve(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.start()
        buffer = bytearray()
        try:
            while True:
                while len(buffer) < 16 or len(buffer) < int.from_bytes(buffer[:4], "big"):
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                length = int.from_bytes(buffer[:4], "big")
                raw, buffer = bytes(buffer[:length]), buffer[length:]
                if not self._handle(*struct.unpack(">LLL", raw[4:16]), raw[16:]):
                    return
        except OSError:
            return
        finally:
            self.bound = False
            self.outbox.put(None)
            self.writer.join(timeout=5)
            self.sock.close()
            with self.peer.lock:
                self.peer._sessions.remove(self)

    def send(self, data: bytes, *, delay: float = 0.0, answers_submit: bool = False) -> None:
        self.outbox.put((time.monotonic() + delay, data, answers_submit))

    def drop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_loop(self) -> None:
        while (item := self.outbox.get()) is not None:
            due, data, answers_submit = item
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            if answers_submit:
                # Before the write: the client may send its next submit the moment it reads.
                with self.peer.lock:
                    self.outstanding -= 1
            try:
                self.sock.sendall(data)
            except OSError:
                return

    def _handle(self, command: int, status: int, sequence: int, body: bytes) -> bool:
        peer = self.peer
        if command == BIND_TRANSCEIVER:
            r = _Reader(body)
            system_id, password, system_type = r.cstring(), r.cstring(), r.cstring()
            answer = (ESME_RINVSYSID if system_id != peer.system_id
                      else ESME_RINVPASWD if password != peer.password else ESME_ROK)
            with peer.lock:
                peer.binds.append(Bind(system_id, password, system_type, answer))
            # An error answer has no body (SMPP 3.4, 4.1).
            self.send(_pdu(BIND_TRANSCEIVER_RESP, answer, sequence,
                           b"" if answer else _cstring("EngagePeer")))
            if answer:
                return False
            self.bound = True
            with peer.lock:
                held, peer._held = peer._held, []
            for data in held:
                self.send(data)
        elif command == SUBMIT_SM and self.bound:
            return self._submit(sequence, body)
        elif command == SUBMIT_SM:
            self.send(_pdu(SUBMIT_SM_RESP, ESME_RINVBNDSTS, sequence))
        elif command == ENQUIRE_LINK:
            self.send(_pdu(ENQUIRE_LINK_RESP, ESME_ROK, sequence))
        elif command == UNBIND:
            # Still reading until the client closes: its answers to our last PDUs may follow.
            self.bound = False
            self.send(_pdu(UNBIND_RESP, ESME_ROK, sequence))
        elif command in COMMAND_NAMES:
            with peer.lock:
                peer.acks.append(Ack(COMMAND_NAMES[command], sequence, status))
        elif not command & 0x80000000:
            self.send(_pdu(GENERIC_NACK, ESME_RINVCMDID, sequence))
        return True

    def _submit(self, sequence: int, body: bytes) -> bool:
        peer = self.peer
        fields = _submit_decode(body)
        with peer.lock:
            drop = peer._answer_then_drop is not None and peer._submits_seen >= \
                peer._answer_then_drop
            peer._submits_seen += 1
            if drop:
                status: int | None = None
                peer._answer_then_drop = None
            elif peer._next_statuses:
                status = peer._next_statuses.pop(0)
            else:
                status = peer.refuse.get(fields["destination_addr"], ESME_ROK)
            message_id = f"{next(peer._message_ids):08x}" if status == ESME_ROK else ""
            submit = Submit(sequence=sequence, status=status, message_id=message_id,
                            received_at=datetime.now(UTC), **fields)
            peer._submits.append(submit)
            if not drop:
                self.outstanding += 1
                peer.outstanding_max = max(peer.outstanding_max, self.outstanding)
        if drop:
            self.drop()
            return False
        self.send(_pdu(SUBMIT_SM_RESP, status, sequence,
                       _cstring(message_id) if status == ESME_ROK else b""),
                  delay=peer.response_delay, answers_submit=True)
        if status == ESME_ROK and peer.auto_receipt and submit.registered_delivery & 1:
            self.send(peer._receipt_pdu(submit, stat=peer.auto_receipt, err="000",
                                        done_at=datetime.now(UTC)), delay=peer.response_delay)
        return True


@dataclass
class SmppPeer:
    system_id: str = "engage"
    password: str = "secret"
    # Destination address (as sent, without "+") -> the status to answer its submits with.
    refuse: dict[str, int] = field(default_factory=dict)
    # Seconds between reading a submit and answering it.
    response_delay: float = 0.0
    # A stat ("DELIVRD", "UNDELIV", ...) to send a receipt with after each accepted submit.
    auto_receipt: str = ""
    binds: list[Bind] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    outstanding_max: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._submits: list[Submit] = []
        self._submits_seen = 0
        self._next_statuses: list[int] = []
        self._answer_then_drop: int | None = None
        self._sessions: list[_Session] = []
        self._held: list[bytes] = []
        self._message_ids = itertools.count(0x1F000001)
        self._sequences = itertools.count(1)
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                session = _Session(peer, self.request)
                with peer.lock:
                    peer._sessions.append(session)
                session.serve()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]

    def start(self) -> SmppPeer:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.drop()

    def gateway_settings(self, **overrides: object) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "system_id": self.system_id,
                "password": self.password, "source_addr": "Club", "timeout": 2,
                "response_timeout": 2, **overrides}

    # -- behaviour ---------------------------------------------------------------------------

    def throttle(self, count: int, status: int = ESME_RTHROTTLED) -> None:
        """Answer the next `count` submits with `status` (0x58 throttled, 0x14 queue full)."""
        self.answer_next(*[status] * count)

    def answer_next(self, *statuses: int) -> None:
        """Answer the next submits with these statuses, in order (0 accepts)."""
        with self.lock:
            self._next_statuses.extend(statuses)

    def answer_then_drop(self, answered: int) -> None:
        """Answer `answered` more submits, then close the connection on reading the next one."""
        with self.lock:
            self._answer_then_drop = self._submits_seen + answered

    # -- what the SMSC sends on its own -------------------------------------------------------

    def receipt(self, message_id: str, *, stat: str = "DELIVRD", err: str = "000",
                done_at: datetime | None = None, text_id: str = "", tlvs: bool = False) -> int:
        """Send a delivery receipt for `message_id`; returns its sequence number.

        `text_id` puts another id in the text (some SMSCs print it in decimal there); `tlvs`
        adds receipted_message_id and message_state, as SMPP 3.4 allows.
        """
        with self.lock:
            submit = next((s for s in self._submits if s.message_id == message_id), None)
        data = self._receipt_pdu(submit, message_id=text_id or message_id, stat=stat, err=err,
                                 done_at=done_at or datetime.now(UTC))
        if tlvs:
            state = MESSAGE_STATES[stat]
            extra = (struct.pack(">HH", 0x001E, len(message_id) + 1) + _cstring(message_id)
                     + struct.pack(">HHB", 0x0427, 1, state))
            data = struct.pack(">L", len(data) + len(extra)) + data[4:] + extra
        return self._deliver(data)

    def receipts(self, message_ids: list[str], *, stat: str = "DELIVRD") -> list[int]:
        """Receipts for these ids written to the client at once, in one TCP send (as an SMSC
        flushing a queue); returns their sequence numbers."""
        pdus = []
        with self.lock:
            submits = {s.message_id: s for s in self._submits}
        for message_id in message_ids:
            pdus.append(self._receipt_pdu(submits.get(message_id), message_id=message_id,
                                          stat=stat, err="000", done_at=datetime.now(UTC)))
        self._deliver(b"".join(pdus))
        return [struct.unpack(">L", pdu[12:16])[0] for pdu in pdus]

    def drop_sessions(self) -> None:
        """Cut every client connection without an unbind, as a network failure does; what is
        delivered afterwards waits for the next bind."""
        with self.lock:
            sessions = list(self._sessions)
            for session in sessions:
                session.bound = False
        for session in sessions:
            session.drop()

    def mo(self, phone: str, text: str, *, to: str = "Club") -> int:
        """Send a member's SMS (a reply such as "STOP"); returns its sequence number."""
        try:
            coding, message = 0x00, gsm7_encode(text)
        except (KeyError, ValueError):
            coding, message = 0x08, text.encode("utf-16-be")
        sequence = next(self._sequences)
        body = (_cstring("") + bytes((1, 1)) + _cstring(phone.removeprefix("+"))
                + bytes((5, 0)) + _cstring(to) + bytes((0x00, 0, 0)) + _cstring("")
                + _cstring("") + bytes((0, 0, coding, 0, len(message))) + message)
        return self._deliver(_pdu(DELIVER_SM, ESME_ROK, sequence, body))

    def enquire_link(self) -> int:
        sequence = next(self._sequences)
        return self._deliver(_pdu(ENQUIRE_LINK, ESME_ROK, sequence))

    def _receipt_pdu(self, submit: Submit | None, *, stat: str, err: str, done_at: datetime,
                     message_id: str = "") -> bytes:
        message_id = message_id or (submit.message_id if submit else "")
        submitted = submit.received_at if submit else done_at
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:{submitted:%y%m%d%H%M} done date:{done_at:%y%m%d%H%M} "
                f"stat:{stat} err:{err} text:{(submit.text if submit else '')[:20]}")
        message = text.encode("latin-1", "replace")
        # A receipt goes from the handset back to the sender: the addresses swap.
        body = (_cstring("") + bytes((1, 1)) + _cstring(submit.destination_addr if submit else "")
                + bytes((5, 0)) + _cstring(submit.source_addr if submit else "")
                + bytes((0x04, 0, 0)) + _cstring("") + _cstring("")
                + bytes((0, 0, 0, 0, len(message))) + message)
        return _pdu(DELIVER_SM, ESME_ROK, next(self._sequences), body)

    def _deliver(self, data: bytes) -> int:
        """To the newest bound session, or to the next one to bind."""
        with self.lock:
            bound = [s for s in self._sessions if s.bound]
            if not bound:
                self._held.append(data)
        if bound:
            bound[-1].send(data)
        return struct.unpack(">L", data[12:16])[0]

    def wait_closed(self, timeout: float = 2.0) -> None:
        """Until every client has gone and all it sent is recorded."""
        deadline = time.monotonic() + timeout
        while self._sessions:
            if time.monotonic() > deadline:
                raise AssertionError(f"SMPP clients still connected after {timeout}s")
            time.sleep(0.005)

    # -- what it was sent ---------------------------------------------------------------------

    @property
    def submits(self) -> list[Submit]:
        with self.lock:
            return list(self._submits)

    def messages(self) -> list[tuple[str, str]]:
        """(destination, whole text) per message, concatenated parts joined in order."""
        whole: dict[tuple, list[Submit]] = {}
        for submit in self.submits:
            key = ((submit.destination_addr, submit.concat[0]) if submit.concat
                   else (submit.destination_addr, "single", submit.sequence))
            whole.setdefault(key, []).append(submit)
        return [(parts[0].destination_addr,
                 "".join(p.text for p in sorted(parts, key=lambda p: p.concat[2] if p.concat
                                                else 0)))
                for parts in whole.values()]


def main() -> None:
    """`python -m tests.peers.smpp --settings-out F --stats-out S`: the SMSC in a process of
    its own (benchmarks: sharing the sender's GIL would measure the wrong thing). It writes
    the gateway settings to F once it listens, and on SIGTERM the submits it accepted to S."""
    import argparse
    import json
    import signal
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings-out", type=Path, required=True)
    parser.add_argument("--stats-out", type=Path, required=True)
    args = parser.parse_args()
    peer = SmppPeer().start()
    partial = args.settings_out.with_suffix(".partial")
    partial.write_text(json.dumps(peer.gateway_settings()))
    partial.replace(args.settings_out)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    with peer.lock:
        accepted = sum(1 for submit in peer._submits if submit.status == ESME_ROK)
        submitted = len(peer._submits)
    # Messages, their concatenated parts counted once: what the sender's rows are matched to.
    args.stats_out.write_text(json.dumps({"accepted": accepted, "submits": submitted,
                                          "messages": len(peer.messages()),
                                          "outstanding_max": peer.outstanding_max}))
    peer.stop()


if __name__ == "__main__":
    main()
