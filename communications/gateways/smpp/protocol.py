"""SMPP 3.4 on the wire: the command ids and statuses Engage acts on, and one framed
connection (whole PDUs in and out, our own sequence numbers).

smpplib builds and parses the PDU bodies; the framing is ours, because its Client reads one
PDU at a time in lockstep with each write and the adapter keeps a window of submits open.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from smpplib import consts

GENERIC_NACK, SUBMIT_SM, SUBMIT_SM_RESP = 0x80000000, 0x00000004, 0x80000004
BIND_TRANSCEIVER_RESP, DELIVER_SM, DELIVER_SM_RESP = 0x80000009, 0x00000005, 0x80000005
UNBIND, UNBIND_RESP, ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x06, 0x80000006, 0x15, 0x80000015
ALERT_NOTIFICATION, RESPONSE_BIT = 0x00000102, 0x80000000

ESME_ROK, ESME_RINVCMDID, ESME_RSYSERR = 0x00, 0x03, 0x08
ESME_RMSGQFUL, ESME_RTHROTTLED = 0x14, 0x58
ESME_RX_T_APPN, ESME_RX_P_APPN = 0x64, 0x65
# The SMSC asks us to slow down: the batch stops starting messages and the rest wait.
THROTTLED = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
# Worth another attempt later; every other refusal of a submit is permanent.
TRANSIENT = THROTTLED | {ESME_RSYSERR}
# A bind refused for these will be refused again until someone fixes the settings.
BIND_PERMANENT = frozenset({0x0D, 0x0E, 0x0F})  # RBINDFAIL, RINVPASWD, RINVSYSID

Pdu = tuple[int, int, int, bytes]  # command_id, command_status, sequence, the whole PDU


class SessionLost(Exception):
    """The SMPP session can no longer be used; the text says why."""


class _NoSequence:
    # smpplib numbers every PDU it builds from a client; ours are numbered before writing.
    sequence = 0

    def next_sequence(self) -> int:
        return 0


NO_SEQUENCE = _NoSequence()


def describe(status: int) -> str:
    return f"{consts.DESCRIPTIONS.get(status, 'unknown status')} (0x{status:08X})"


def status_code(status: int) -> str:
    """The code a failed message keeps, e.g. smpp:0x58."""
    return f"smpp:0x{status:02X}"


class Connection:
    """One TCP connection to the SMSC carrying whole PDUs."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._sequence = 0

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def connect(self, host: str, port: int, timeout: float) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        # Submits are small and pipelined: Nagle's delay would stall the window.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def write_pdu(self, pdu: Any) -> int:
        """Number an smpplib PDU and write it; returns its sequence."""
        pdu.sequence = self.next_sequence()
        self.write_bytes(pdu.generate())
        return pdu.sequence

    def write(self, command: int, body: bytes, *, status: int = 0,
              sequence: int | None = None) -> int:
        sequence = self.next_sequence() if sequence is None else sequence
        self.write_bytes(struct.pack(">LLLL", 16 + len(body), command, status, sequence) + body)
        return sequence

    def write_bytes(self, data: bytes) -> None:
        if self._sock is None:
            raise SessionLost("the connection is closed")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise SessionLost(f"write failed: {exc}") from None

    def read_pdu(self, timeout: float) -> Pdu | None:
        """The next whole PDU, or None after `timeout` seconds without one."""
        buffer = self._buffer
        while True:
            if len(buffer) >= 16:
                length = int.from_bytes(buffer[:4], "big")
                if not 16 <= length <= 65536:
                    raise SessionLost(f"malformed PDU length {length}")
                if len(buffer) >= length:
                    raw = bytes(buffer[:length])
                    del buffer[:length]
                    command, status, sequence = struct.unpack(">LLL", raw[4:16])
                    return command, status, sequence, raw
            if self._sock is None:
                raise SessionLost("the connection is closed")
            try:
                self._sock.settimeout(max(timeout, 0.001))
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                raise SessionLost(f"read failed: {exc}") from None
            if not chunk:
                raise SessionLost("the SMSC closed the connection")
            buffer += chunk

    def drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buffer.clear()
