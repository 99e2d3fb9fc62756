"""SMS over SMPP 3.4: one bind_transceiver per batch, a window of outstanding submits.

Each message is cut by `sms_parts` (GSM-7 or UCS-2, never splitting an escape or a surrogate
pair) and goes out as one submit_sm per part, concatenated with an 8-bit-reference UDH. Up to
`window` submits are outstanding at once; responses are matched by sequence number, so the SMSC
may answer out of order. Between responses the SMSC may send deliver_sm (receipts, a member's
reply) and enquire_link, which are answered in the same loop.

What a message ends as:
- every part accepted: sent, provider_id = the last part's message_id, cost per segment;
- ESME_RTHROTTLED / ESME_RMSGQFUL: transient with retry_after, and no new message is started
  in this batch (the SMSC asked us to slow down; the rate limiter takes it from there);
- any part of it at the SMSC without a final answer (no response before the connection died,
  or one part accepted and another refused): in doubt, never resent, because resending would
  give the member the accepted parts twice;
- not submitted at all: transient.

smpplib builds and parses the PDU bodies; the framing and the window are ours, because its
Client reads one PDU at a time in lockstep with each write.
"""

from __future__ import annotations

import logging
import random
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smpplib import consts, smpp

from communications.gateways.base import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
    register,
)
from communications.sms_encoding import GSM7_BASIC, SEGMENTS_MAX, sms_parts

logger = logging.getLogger(__name__)

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

ESM_UDHI = 0x40
ESM_RECEIPT, ESM_INTERMEDIATE = 0x04, 0x20
DATA_CODING_GSM7, DATA_CODING_UCS2 = 0x00, 0x08

# The code points of GSM 03.38; sms_encoding keeps the alphabet without the escape (0x1B).
_GSM7_EXTENSION_CODES = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                         "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
_GSM7_BASIC_CODES = dict(zip(GSM7_BASIC, (c for c in range(0x80) if c != 0x1B), strict=True))
# SMPP carries GSM-7 unpacked, one septet per octet; the SMSC packs it for the air.
_GSM7_ENCODE = str.maketrans(
    {char: chr(code) for char, code in _GSM7_BASIC_CODES.items()}
    | {char: "\x1b" + chr(code) for char, code in _GSM7_EXTENSION_CODES.items()}
)
_GSM7_DECODE = {code: char for char, code in _GSM7_BASIC_CODES.items()}
_GSM7_DECODE_EXTENSION = {code: char for char, code in _GSM7_EXTENSION_CODES.items()}

# Receipt states (the `stat:` field, or the message_state TLV) in Engage's statuses. UNKNOWN is
# final for the SMSC and confirms no delivery: undelivered, which lets a cascade go on; our own
# `unknown` means "in doubt at send" and must not be reached from a receipt. Non-final states
# (ACCEPTD, ENROUTE) are not listed: the parser returns None for them.
RECEIPT_STATUSES = {
    "DELIVRD": "delivered", "DELIVERED": "delivered",
    "EXPIRED": "expired",
    "DELETED": "undelivered", "UNDELIV": "undelivered", "UNDELIVERABLE": "undelivered",
    "UNKNOWN": "undelivered",
    "REJECTD": "rejected", "REJECTED": "rejected",
}
_MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                   6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
_RECEIPT_FIELD = re.compile(r"(id|stat|err|submit date|done date)\s*:\s*(\S*)", re.IGNORECASE)
_RECEIPT_TEXT = re.compile(r"\btext\s*:", re.IGNORECASE)
_NUMERIC = re.compile(r"\+?[0-9]{1,20}")
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 .&'_-]{1,11}")


@dataclass(frozen=True)
class InboundSms:
    """A member's text to our sender (MO); `phone` is E.164 when the SMSC marks it international."""

    phone: str
    text: str
    received_at: datetime
    recipient: str = ""


ReceiptHandler = Callable[[Receipt], None]
InboundHandler = Callable[[InboundSms], None]


def smpp_receipt_parse(short_message: bytes | str, *, tz: tzinfo = UTC) -> Receipt | None:
    """A delivery receipt's text ("id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…
    text:…") as a Receipt, or None when it is not a final state or not a receipt.

    The dates carry no zone: they are read in `tz`, the SMSC's (the gateway's
    `receipt_timezone`). Fields are looked for before `text:`, which holds message text.
    """
    if isinstance(short_message, bytes):
        short_message = short_message.decode("latin-1")
    head = _RECEIPT_TEXT.split(short_message, maxsplit=1)[0]
    fields = {key.lower(): value for key, value in _RECEIPT_FIELD.findall(head)}
    if not fields.get("id") or not fields.get("stat"):
        return None
    occurred_at = _receipt_time(fields.get("done date", ""), tz)
    return _receipt_build(provider_id=fields["id"], stat=fields["stat"],
                          err=fields.get("err", ""), occurred_at=occurred_at,
                          detail=short_message.strip())


def _receipt_build(*, provider_id: str, stat: str, err: str, occurred_at: datetime | None,
                   detail: str) -> Receipt | None:
    status = RECEIPT_STATUSES.get(stat.upper())
    if status is None:
        return None
    return Receipt(provider_id=provider_id, status=status,
                   occurred_at=occurred_at or datetime.now(UTC),
                   code=f"{stat.upper()}:{err}", detail=detail)


def _receipt_time(value: str, tz: tzinfo) -> datetime | None:
    # YYMMDDhhmm in SMPP 3.4 Appendix B; many SMSCs add seconds.
    if not re.fullmatch(r"[0-9]{10}(?:[0-9]{2})?", value):
        return None
    try:
        return datetime.strptime(value.ljust(12, "0"), "%y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        return None


def _gsm7_decode(data: bytes) -> str:
    chars: list[str] = []
    escaped = False
    for octet in data:
        if escaped:
            chars.append(_GSM7_DECODE_EXTENSION.get(octet, " "))
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            chars.append(_GSM7_DECODE.get(octet, "?"))
    return "".join(chars)


def _text_decode(data: bytes, data_coding: int) -> str:
    if data_coding == DATA_CODING_UCS2:
        return data.decode("utf-16-be", "replace")
    if data_coding == DATA_CODING_GSM7 or (data_coding & 0xF4) == 0xF0:
        return _gsm7_decode(data)
    return data.decode("latin-1")


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value or "")


def _source_address(value: str) -> tuple[str, int, int] | None:
    """The sender id with its TON/NPI: international number, short code or alphanumeric name."""
    value = value.strip()
    if _NUMERIC.fullmatch(value) and len(value.removeprefix("+")) <= 15:
        digits = value.removeprefix("+")
        if value.startswith("+") or len(digits) >= 10:
            return digits, 1, 1  # international, ISDN
        return digits, 3, 0  # a short code is network-specific
    if _ALPHANUMERIC.fullmatch(value) and re.search(r"[A-Za-z]", value):
        return value, 5, 0
    return None


class _SessionLost(Exception):
    """The SMPP session can no longer be used; the text says why."""


class _NoSequence:
    # smpplib numbers every PDU it builds from a client; ours are numbered before building.
    sequence = 0

    def next_sequence(self) -> int:
        return 0


_NO_SEQUENCE = _NoSequence()


@dataclass(eq=False)
class _Track:
    """One message of the batch on its way: which parts went out and what came back."""

    outbound: OutboundMessage
    segments: int = 0
    unanswered: int = 0
    accepted: dict[int, str] = field(default_factory=dict)
    error: GatewayError | None = None


@register
class SmppGateway(BaseGateway):
    provider = "smpp"
    channels = frozenset({"sms"})

    # Who takes deliver_sm read during a batch (listen() sets them for its own duration).
    # Without one, a deliver_sm is answered "temporary error" so the SMSC keeps it and offers
    # it again, to a listener, instead of it being acknowledged and dropped.
    on_receipt: ReceiptHandler | None = None
    on_inbound: InboundHandler | None = None

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._sequence = 0
        self._ref = random.randrange(256)
        self._in_flight: dict[int, tuple[_Track, int]] = {}
        self._halt: GatewayError | None = None
        self._source: tuple[str, int, int] = ("", 0, 0)

    def _settings_read(self) -> None:
        s = self.config.settings
        self._timeout = float(s.get("timeout", 10))
        self._response_timeout = float(s.get("response_timeout", self._timeout))
        self._window = int(s.get("window", 10))
        self._throttle_retry_after = float(s.get("throttle_retry_after", 1))
        self._enquire_link_interval = float(s.get("enquire_link_interval", 30))
        self._receipt_tz: tzinfo = ZoneInfo(s.get("receipt_timezone", "UTC"))

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = {}
        if not settings.get("host"):
            errors["host"] = "the SMSC's host name is required"
        port = settings.get("port", 2775)
        if not isinstance(port, int) or not 0 < port < 65536:
            errors["port"] = "must be a port number"
        # smpplib silently cuts longer values to the C-octet string sizes of SMPP 3.4.
        for name, longest, required in (("system_id", 15, True), ("password", 8, False),
                                        ("system_type", 12, False)):
            value = settings.get(name, "")
            if not isinstance(value, str) or not value.isascii() or len(value) > longest:
                errors[name] = f"must be ASCII text of at most {longest} characters"
            elif required and not value:
                errors[name] = "is required"
        if settings.get("source_addr") and _source_address(str(settings["source_addr"])) is None:
            errors["source_addr"] = ("must be a phone number (up to 15 digits) or a name of up "
                                     "to 11 Latin letters and digits")
        window = settings.get("window", 10)
        if not isinstance(window, int) or not 1 <= window <= 1000:
            errors["window"] = "must be a whole number from 1 to 1000"
        for name in ("timeout", "response_timeout", "enquire_link_interval"):
            value = settings.get(name, 10)
            if not isinstance(value, int | float) or value <= 0:
                errors[name] = "must be a number of seconds above 0"
        retry_after = settings.get("throttle_retry_after", 1)
        if not isinstance(retry_after, int | float) or retry_after < 0:
            errors["throttle_retry_after"] = "must be a number of seconds, 0 or more"
        for name in ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi"):
            value = settings.get(name, 0)
            if not isinstance(value, int) or not 0 <= value <= 255:
                errors[name] = "must be a whole number from 0 to 255"
        try:
            ZoneInfo(settings.get("receipt_timezone", "UTC"))
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            errors["receipt_timezone"] = "must be a time zone name such as UTC or Europe/Berlin"
        return errors

    def open(self) -> None:
        s = self.config.settings
        if errors := self.settings_errors(s):
            raise GatewayError("invalid SMPP settings: " + "; ".join(
                f"{name}: {text}" for name, text in sorted(errors.items())),
                code="smpp:settings", permanent=True)
        source = _source_address(str(s.get("source_addr") or self.config.sender or ""))
        if source is None:
            raise GatewayError("the gateway has no valid sender id (source_addr or sender)",
                               code="smpp:source_addr", permanent=True)
        address, ton, npi = source
        self._source = (address, s.get("source_addr_ton", ton), s.get("source_addr_npi", npi))
        self._settings_read()
        host, port = s["host"], s.get("port", 2775)
        try:
            self._sock = socket.create_connection((host, port), timeout=self._timeout)
        except OSError as exc:
            raise GatewayError(f"cannot connect to SMSC {host}:{port}: {exc}",
                               code="smpp:connect", permanent=False) from exc
        # Submits are small and pipelined: Nagle's delay would stall the window.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bind = smpp.make_pdu("bind_transceiver", client=_NO_SEQUENCE,
                             system_id=s["system_id"], password=s.get("password", ""),
                             system_type=s.get("system_type") or None, addr_ton=0, addr_npi=0)
        try:
            sequence = self._write_pdu(bind)
            answer = self._read_pdu(self._timeout)
        except _SessionLost as lost:
            self._drop()
            raise GatewayError(f"bind failed: {lost}", code="smpp:bind", permanent=False) from None
        command, status = answer[:2] if answer else (None, None)
        if status and command in (BIND_TRANSCEIVER_RESP, GENERIC_NACK):
            self._drop()
            raise GatewayError(f"bind refused: {_describe(status)}", code=_code(status),
                               permanent=status in BIND_PERMANENT)
        if answer is None or command != BIND_TRANSCEIVER_RESP or answer[2] != sequence:
            self._drop()
            raise GatewayError("the SMSC did not answer bind_transceiver", code="smpp:bind",
                               permanent=False)

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            # Answer what already arrived first: the SMSC may stop reading once it has unbound.
            while (pdu := self._read_pdu(0)) is not None:
                self._dispatch(*pdu)
            sequence = self._write(UNBIND, b"")
            deadline = time.monotonic() + min(self._timeout, 2.0)
            while (remaining := deadline - time.monotonic()) > 0:
                pdu = self._read_pdu(remaining)
                if pdu is None or (pdu[0] == UNBIND_RESP and pdu[2] == sequence):
                    break
                self._dispatch(*pdu)
        except _SessionLost:
            pass
        finally:
            self._drop()

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        tracks = [_Track(outbound) for outbound in batch]
        self._in_flight, self._halt = {}, None
        lost_reason = ""
        try:
            if self._sock is None:
                raise _SessionLost("the gateway is not open")
            for track in tracks:
                if self._halt is not None:
                    break
                self._submit(track)
            while self._in_flight:
                self._await_response()
        except _SessionLost as lost:
            self._drop()
            lost_reason = str(lost)
            self._halt = GatewayError(f"not submitted: {lost}", code="smpp:connection_lost",
                                      permanent=False)
        return [self._result(track, lost_reason) for track in tracks]

    def listen(self, seconds: float, *, on_receipt: ReceiptHandler,
               on_inbound: InboundHandler) -> int:
        """Stay bound for `seconds`, handing every receipt and inbound SMS to the callbacks.

        Call between open() and close(). Each deliver_sm is acknowledged only after its
        callback returned; a callback that raises gets the SMSC a temporary error, so it
        offers that deliver_sm again. An idle link is probed with enquire_link. Returns how
        many deliver_sm were read.
        """
        if self._sock is None:
            raise GatewayError("listen() needs an open SMPP session", code="smpp:not_bound",
                               permanent=False)
        handlers = self.on_receipt, self.on_inbound
        self.on_receipt, self.on_inbound = on_receipt, on_inbound
        deadline = time.monotonic() + seconds
        heard_at, probe_at = time.monotonic(), None
        delivered = 0
        try:
            while (now := time.monotonic()) < deadline:
                if probe_at is None and now - heard_at >= self._enquire_link_interval:
                    self._write(ENQUIRE_LINK, b"")
                    probe_at = now
                if probe_at is not None and now - probe_at >= self._response_timeout:
                    raise _SessionLost("no answer to enquire_link")
                wake = (probe_at + self._response_timeout if probe_at is not None
                        else heard_at + self._enquire_link_interval)
                pdu = self._read_pdu(min(deadline, wake) - now)
                if pdu is None:
                    continue
                heard_at, probe_at = time.monotonic(), None
                if pdu[0] == DELIVER_SM:
                    delivered += 1
                self._dispatch(*pdu)
        except _SessionLost as lost:
            self._drop()
            raise GatewayError(f"SMPP session lost while listening: {lost}",
                               code="smpp:connection_lost", permanent=False) from None
        finally:
            self.on_receipt, self.on_inbound = handlers
        return delivered

    # -- sending ---------------------------------------------------------------------------

    def _submit(self, track: _Track) -> None:
        outbound = track.outbound
        split = sms_parts(outbound.body)
        if not split.parts or split.segments > SEGMENTS_MAX:
            track.error = GatewayError(f"an SMS must have 1 to {SEGMENTS_MAX} parts, this one "
                                       f"has {split.segments}", code="smpp:length", permanent=True)
            return
        destination = outbound.address.strip()
        if not _NUMERIC.fullmatch(destination):
            track.error = GatewayError(f"not a phone number: {outbound.address!r}",
                                       code="smpp:address", permanent=True)
            return
        track.segments = split.segments
        s = self.config.settings
        source, source_ton, source_npi = self._source
        ucs2 = split.encoding == "ucs2"
        ref = self._next_ref() if split.segments > 1 else 0
        for index, text in enumerate(split.parts):
            while len(self._in_flight) >= self._window:
                self._await_response()
            if track.error is not None:  # an earlier part was refused: the rest is useless
                return
            if index == 0 and self._halt is not None:  # throttled while waiting for room
                return
            payload = text.encode("utf-16-be") if ucs2 else text.translate(_GSM7_ENCODE).encode(
                "latin-1")
            if split.segments > 1:
                payload = bytes((0x05, 0x00, 0x03, ref, split.segments, index + 1)) + payload
            pdu = smpp.make_pdu(
                "submit_sm", client=_NO_SEQUENCE, source_addr=source,
                source_addr_ton=source_ton, source_addr_npi=source_npi,
                destination_addr=destination.removeprefix("+"),
                dest_addr_ton=s.get("dest_addr_ton", 1), dest_addr_npi=s.get("dest_addr_npi", 1),
                esm_class=ESM_UDHI if split.segments > 1 else 0, registered_delivery=1,
                data_coding=DATA_CODING_UCS2 if ucs2 else DATA_CODING_GSM7,
                short_message=payload,
            )
            pdu.sequence = self._next_sequence()
            # Counted before the write: a write that fails half-way may still have reached it.
            self._in_flight[pdu.sequence] = (track, index)
            track.unanswered += 1
            self._write_bytes(pdu.generate())

    def _await_response(self) -> None:
        pdu = self._read_pdu(self._response_timeout)
        if pdu is None:
            raise _SessionLost(f"no response from the SMSC within {self._response_timeout:g} s")
        self._dispatch(*pdu)

    def _on_submit_resp(self, status: int, sequence: int, body: bytes) -> None:
        entry = self._in_flight.pop(sequence, None)
        if entry is None:
            return
        track, index = entry
        track.unanswered -= 1
        if status == ESME_ROK:
            track.accepted[index] = body.split(b"\0", 1)[0].decode("latin-1")
            return
        error = GatewayError(f"the SMSC refused the message: {_describe(status)}",
                             code=_code(status), permanent=status not in TRANSIENT,
                             retry_after=self._throttle_retry_after if status in THROTTLED
                             else None)
        track.error = track.error or error
        if status in THROTTLED and self._halt is None:
            self._halt = GatewayError(f"not submitted: the SMSC answered {_describe(status)}",
                                      code=_code(status), permanent=False,
                                      retry_after=self._throttle_retry_after)

    def _result(self, track: _Track, lost_reason: str) -> SendResult:
        message_id, segments = track.outbound.message_id, track.segments
        if segments and len(track.accepted) == segments:
            return SendResult(message_id, provider_id=track.accepted[segments - 1],
                              cost=self.config.price_per_message * segments)
        if track.accepted or track.unanswered:
            cause = track.error.message if track.error else f"connection lost: {lost_reason}"
            return SendResult(message_id, error=GatewayError(
                f"{len(track.accepted)} of {segments} parts accepted, {track.unanswered} "
                f"unanswered ({cause}); not resent, the member may have received it",
                code=track.error.code if track.error else "smpp:connection_lost",
                permanent=False, in_doubt=True))
        return SendResult(message_id, error=track.error or self._halt or GatewayError(
            "not submitted", code="smpp:not_submitted", permanent=False))

    # -- what the SMSC sends -----------------------------------------------------------------

    def _dispatch(self, command: int, status: int, sequence: int, raw: bytes) -> None:
        if command in (SUBMIT_SM_RESP, GENERIC_NACK):
            # A generic_nack always carries an error; one without says nothing useful.
            if command == GENERIC_NACK and status == ESME_ROK:
                status = ESME_RSYSERR
            self._on_submit_resp(status, sequence, raw[16:])
        elif command == DELIVER_SM:
            self._write(DELIVER_SM_RESP, b"\0", status=self._on_deliver(raw), sequence=sequence)
        elif command == ENQUIRE_LINK:
            self._write(ENQUIRE_LINK_RESP, b"", sequence=sequence)
        elif command == UNBIND:
            self._write(UNBIND_RESP, b"", sequence=sequence)
            raise _SessionLost("the SMSC unbound the session")
        elif not command & RESPONSE_BIT and command != ALERT_NOTIFICATION:  # that one has no answer
            self._write(GENERIC_NACK, b"", status=ESME_RINVCMDID, sequence=sequence)

    def _on_deliver(self, raw: bytes) -> int:
        """Hand one deliver_sm over; the status is what we answer the SMSC."""
        try:
            pdu = smpp.parse_pdu(raw, client=_NO_SEQUENCE, allow_unknown_opt_params=True)
            item = self._deliver_item(pdu)
        except Exception:  # noqa: BLE001  (a PDU we cannot read must not end the batch)
            logger.warning("unreadable deliver_sm from the SMSC: %s", raw.hex(), exc_info=True)
            return ESME_RX_P_APPN
        if item is None:
            return ESME_ROK
        handler = self.on_receipt if isinstance(item, Receipt) else self.on_inbound
        if handler is None:
            return ESME_RX_T_APPN
        try:
            handler(item)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001  (the SMSC offers it again: nothing is lost)
            logger.exception("deliver_sm handler failed for %r", item)
            return ESME_RX_T_APPN
        return ESME_ROK

    def _deliver_item(self, pdu: Any) -> Receipt | InboundSms | None:
        esm_class = pdu.esm_class or 0
        message = pdu.short_message or pdu.message_payload or b""
        if esm_class & 0x3C in (ESM_RECEIPT, ESM_INTERMEDIATE):
            receipt = smpp_receipt_parse(message, tz=self._receipt_tz)
            # The TLV is the id exactly as submit_sm_resp gave it; some SMSCs print the one in
            # the text in another base.
            tlv_id = _text(pdu.receipted_message_id)
            if receipt is None and tlv_id and pdu.message_state in _MESSAGE_STATES:
                receipt = _receipt_build(provider_id=tlv_id, stat=_MESSAGE_STATES[
                    pdu.message_state], err="", occurred_at=None, detail=_text(message))
            if receipt is None:
                logger.info("SMPP receipt ignored (not final or unreadable): %r", message)
                return None
            return replace(receipt, provider_id=tlv_id) if tlv_id else receipt
        if esm_class & ESM_UDHI and message:
            message = message[1 + message[0]:]
        phone = _text(pdu.source_addr)
        if pdu.source_addr_ton == 1 and phone.isdigit():
            phone = f"+{phone}"
        return InboundSms(phone=phone, text=_text_decode(message, pdu.data_coding or 0),
                          received_at=datetime.now(UTC), recipient=_text(pdu.destination_addr))

    # -- the wire ------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def _next_ref(self) -> int:
        self._ref = (self._ref + 1) % 256
        return self._ref

    def _write_pdu(self, pdu: Any) -> int:
        pdu.sequence = self._next_sequence()
        self._write_bytes(pdu.generate())
        return pdu.sequence

    def _write(self, command: int, body: bytes, *, status: int = 0,
               sequence: int | None = None) -> int:
        sequence = self._next_sequence() if sequence is None else sequence
        self._write_bytes(struct.pack(">LLLL", 16 + len(body), command, status, sequence) + body)
        return sequence

    def _write_bytes(self, data: bytes) -> None:
        if self._sock is None:
            raise _SessionLost("the connection is closed")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise _SessionLost(f"write failed: {exc}") from None

    def _read_pdu(self, timeout: float) -> tuple[int, int, int, bytes] | None:
        """The next whole PDU as (command_id, status, sequence, raw), or None after `timeout`."""
        buffer = self._buffer
        while True:
            if len(buffer) >= 16:
                length = int.from_bytes(buffer[:4], "big")
                if not 16 <= length <= 65536:
                    raise _SessionLost(f"malformed PDU length {length}")
                if len(buffer) >= length:
                    raw = bytes(buffer[:length])
                    del buffer[:length]
                    command, status, sequence = struct.unpack(">LLL", raw[4:16])
                    return command, status, sequence, raw
            if self._sock is None:
                raise _SessionLost("the connection is closed")
            try:
                self._sock.settimeout(max(timeout, 0.001))
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                raise _SessionLost(f"read failed: {exc}") from None
            if not chunk:
                raise _SessionLost("the SMSC closed the connection")
            buffer += chunk

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buffer.clear()


def _describe(status: int) -> str:
    return f"{consts.DESCRIPTIONS.get(status, 'unknown status')} (0x{status:08X})"


def _code(status: int) -> str:
    return f"smpp:0x{status:02X}"
