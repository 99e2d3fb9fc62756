"""The SMPP adapter: one bind_transceiver per batch (or per listener), a window of
outstanding submits, and the deliver_sm the SMSC sends us in between.

Each message is cut by `sms_parts` (GSM-7 or UCS-2, never splitting an escape or a surrogate
pair) and goes out as one submit_sm per part, concatenated with an 8-bit-reference UDH. Up to
`window` submits are outstanding at once; responses are matched by sequence number, so the SMSC
may answer out of order. Between responses the SMSC may send deliver_sm (receipts, a member's
reply) and enquire_link, which are answered in the same loop.

What a message ends as:
- every part accepted: sent, provider_id = the last part's message_id, cost per segment. Each
  part has its own id and its own receipt; the message is matched on its last part's (the
  part delivered last, so its receipt is the latest word on the whole text). The other parts'
  receipts stay unmatched in the receipts inbox until `receipts_prune` removes them;
- ESME_RTHROTTLED / ESME_RMSGQFUL: transient with retry_after, and no new message is started
  in this batch (the SMSC asked us to slow down; the rate limiter takes it from there);
- any part of it at the SMSC without a final answer (no response before the connection died,
  or one part accepted and another refused): in doubt, never resent, because resending would
  give the member the accepted parts twice;
- not submitted at all: transient, or after the session was lost no result (the caller gives
  it back to the queue without spending an attempt).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from smpplib import smpp

from communications.gateways.base import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
    register,
)
from communications.gateways.smpp.config import PHONE_NUMBER, smpp_settings_errors, source_address
from communications.gateways.smpp.encoding import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    ESM_UDHI,
    concat_udh,
    part_encode,
)
from communications.gateways.smpp.protocol import (
    ALERT_NOTIFICATION,
    BIND_PERMANENT,
    BIND_TRANSCEIVER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RX_P_APPN,
    ESME_RX_T_APPN,
    GENERIC_NACK,
    NO_SEQUENCE,
    RESPONSE_BIT,
    SUBMIT_SM_RESP,
    THROTTLED,
    TRANSIENT,
    UNBIND,
    UNBIND_RESP,
    Connection,
    Pdu,
    SessionLost,
    describe,
    status_code,
)
from communications.gateways.smpp.receipts import InboundSms, deliver_sm_read
from communications.sms_encoding import SEGMENTS_MAX, sms_parts

logger = logging.getLogger(__name__)

# deliver_sm read together by a listener and handed over in one call (one INSERT of receipts),
# each answered only after that call returned.
DELIVERIES_PER_HANDOVER = 500

ReceiptsHandler = Callable[[Sequence[Receipt]], None]
InboundHandler = Callable[[InboundSms], None]


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
    secret_settings = ("password",)

    # Who takes deliver_sm read during a batch (listen() sets them for its own duration).
    # Without one, a deliver_sm is answered "temporary error" so the SMSC keeps it and offers
    # it again, to a listener, instead of it being acknowledged and dropped.
    on_receipts: ReceiptsHandler | None = None
    on_inbound: InboundHandler | None = None

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        self._wire = Connection()
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
        return smpp_settings_errors(settings)

    def open(self) -> None:
        s = self.config.settings
        if errors := self.settings_errors(s):
            raise GatewayError("invalid SMPP settings: " + "; ".join(
                f"{name}: {text}" for name, text in sorted(errors.items())),
                code="smpp:settings", permanent=True)
        source = source_address(str(s.get("source_addr") or self.config.sender or ""))
        if source is None:
            raise GatewayError("the gateway has no valid sender id (source_addr or sender)",
                               code="smpp:source_addr", permanent=True)
        address, ton, npi = source
        self._source = (address, s.get("source_addr_ton", ton), s.get("source_addr_npi", npi))
        self._settings_read()
        host, port = s["host"], s.get("port", 2775)
        try:
            self._wire.connect(host, port, self._timeout)
        except OSError as exc:
            raise GatewayError(f"cannot connect to SMSC {host}:{port}: {exc}",
                               code="smpp:connect", permanent=False) from exc
        bind = smpp.make_pdu("bind_transceiver", client=NO_SEQUENCE,
                             system_id=s["system_id"], password=s.get("password", ""),
                             system_type=s.get("system_type") or None, addr_ton=0, addr_npi=0)
        try:
            sequence = self._wire.write_pdu(bind)
            answer = self._wire.read_pdu(self._timeout)
        except SessionLost as lost:
            self._wire.drop()
            raise GatewayError(f"bind failed: {lost}", code="smpp:bind", permanent=False) from None
        command, status = answer[:2] if answer else (None, None)
        if status and command in (BIND_TRANSCEIVER_RESP, GENERIC_NACK):
            self._wire.drop()
            raise GatewayError(f"bind refused: {describe(status)}", code=status_code(status),
                               permanent=status in BIND_PERMANENT)
        if answer is None or command != BIND_TRANSCEIVER_RESP or answer[2] != sequence:
            self._wire.drop()
            raise GatewayError("the SMSC did not answer bind_transceiver", code="smpp:bind",
                               permanent=False)

    def close(self) -> None:
        if not self._wire.is_open:
            return
        try:
            # Answer what already arrived first: the SMSC may stop reading once it has unbound.
            while (pdu := self._wire.read_pdu(0)) is not None:
                self._dispatch(pdu)
            sequence = self._wire.write(UNBIND, b"")
            deadline = time.monotonic() + min(self._timeout, 2.0)
            while (remaining := deadline - time.monotonic()) > 0:
                pdu = self._wire.read_pdu(remaining)
                if pdu is None or (pdu[0] == UNBIND_RESP and pdu[2] == sequence):
                    break
                self._dispatch(pdu)
        except SessionLost:
            pass
        finally:
            self._wire.drop()

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        tracks = [_Track(outbound) for outbound in batch]
        self._in_flight, self._halt = {}, None
        lost_reason = ""
        try:
            if not self._wire.is_open:
                raise SessionLost("the gateway is not open")
            for track in tracks:
                if self._halt is not None:
                    break
                self._submit(track)
            while self._in_flight:
                self._await_response()
        except SessionLost as lost:
            self._wire.drop()
            lost_reason = str(lost)
        results = (self._result(track, lost_reason) for track in tracks)
        # After a lost session, what was never submitted gets no result: the caller gives it
        # back to the queue without spending an attempt.
        return [result for result in results if result is not None]

    def listen(self, seconds: float, *, on_receipts: ReceiptsHandler,
               on_inbound: InboundHandler) -> int:
        """Stay bound for `seconds`, handing receipts and inbound SMS to the callbacks.

        Call between open() and close(). Receipts that arrive together (up to
        DELIVERIES_PER_HANDOVER) go to `on_receipts` in one call; each deliver_sm is
        acknowledged only after its callback returned, and one that raises gets the SMSC a
        temporary error, so it offers those deliver_sm again. An idle link is probed with
        enquire_link. Returns how many deliver_sm were read.
        """
        if not self._wire.is_open:
            raise GatewayError("listen() needs an open SMPP session", code="smpp:not_bound",
                               permanent=False)
        handlers = self.on_receipts, self.on_inbound
        self.on_receipts, self.on_inbound = on_receipts, on_inbound
        deadline = time.monotonic() + seconds
        heard_at, probe_at = time.monotonic(), None
        delivered = 0
        try:
            while (now := time.monotonic()) < deadline:
                if probe_at is None and now - heard_at >= self._enquire_link_interval:
                    self._wire.write(ENQUIRE_LINK, b"")
                    probe_at = now
                if probe_at is not None and now - probe_at >= self._response_timeout:
                    raise SessionLost("no answer to enquire_link")
                wake = (probe_at + self._response_timeout if probe_at is not None
                        else heard_at + self._enquire_link_interval)
                pdu = self._wire.read_pdu(min(deadline, wake) - now)
                if pdu is None:
                    continue
                heard_at, probe_at = time.monotonic(), None
                # Whatever else already arrived is taken with it, so receipts go in bulk.
                pdus = [pdu]
                while (len(pdus) < DELIVERIES_PER_HANDOVER
                       and (more := self._wire.read_pdu(0)) is not None):
                    pdus.append(more)
                delivered += sum(1 for pdu in pdus if pdu[0] == DELIVER_SM)
                self._dispatch_all(pdus)
        except SessionLost as lost:
            self._wire.drop()
            raise GatewayError(f"SMPP session lost while listening: {lost}",
                               code="smpp:connection_lost", permanent=False) from None
        finally:
            self.on_receipts, self.on_inbound = handlers
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
        if not PHONE_NUMBER.fullmatch(destination):
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
            payload = part_encode(text, ucs2=ucs2)
            if split.segments > 1:
                payload = concat_udh(ref, split.segments, index + 1) + payload
            pdu = smpp.make_pdu(
                "submit_sm", client=NO_SEQUENCE, source_addr=source,
                source_addr_ton=source_ton, source_addr_npi=source_npi,
                destination_addr=destination.removeprefix("+"),
                dest_addr_ton=s.get("dest_addr_ton", 1), dest_addr_npi=s.get("dest_addr_npi", 1),
                esm_class=ESM_UDHI if split.segments > 1 else 0, registered_delivery=1,
                data_coding=DATA_CODING_UCS2 if ucs2 else DATA_CODING_GSM7,
                short_message=payload,
            )
            pdu.sequence = self._wire.next_sequence()
            # Counted before the write: a write that fails half-way may still have reached it.
            self._in_flight[pdu.sequence] = (track, index)
            track.unanswered += 1
            self._wire.write_bytes(pdu.generate())

    def _next_ref(self) -> int:
        self._ref = (self._ref + 1) % 256
        return self._ref

    def _await_response(self) -> None:
        pdu = self._wire.read_pdu(self._response_timeout)
        if pdu is None:
            raise SessionLost(f"no response from the SMSC within {self._response_timeout:g} s")
        self._dispatch(pdu)

    def _on_submit_resp(self, status: int, sequence: int, body: bytes) -> None:
        entry = self._in_flight.pop(sequence, None)
        if entry is None:
            return
        track, index = entry
        track.unanswered -= 1
        if status == ESME_ROK:
            track.accepted[index] = body.split(b"\0", 1)[0].decode("latin-1")
            return
        error = GatewayError(f"the SMSC refused the message: {describe(status)}",
                             code=status_code(status), permanent=status not in TRANSIENT,
                             retry_after=self._throttle_retry_after if status in THROTTLED
                             else None)
        track.error = track.error or error
        if status in THROTTLED and self._halt is None:
            self._halt = GatewayError(f"not submitted: the SMSC answered {describe(status)}",
                                      code=status_code(status), permanent=False,
                                      retry_after=self._throttle_retry_after)

    def _result(self, track: _Track, lost_reason: str) -> SendResult | None:
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
        if track.error is None and lost_reason:
            return None
        return SendResult(message_id, error=track.error or self._halt or GatewayError(
            "not submitted", code="smpp:not_submitted", permanent=False))

    # -- what the SMSC sends -----------------------------------------------------------------

    def _dispatch(self, pdu: Pdu) -> None:
        self._dispatch_all([pdu])

    def _dispatch_all(self, pdus: Sequence[Pdu]) -> None:
        deliveries: list[tuple[int, bytes]] = []
        for command, status, sequence, raw in pdus:
            if command == DELIVER_SM:
                deliveries.append((sequence, raw))
            elif command in (SUBMIT_SM_RESP, GENERIC_NACK):
                # A generic_nack always carries an error; one without says nothing useful.
                if command == GENERIC_NACK and status == ESME_ROK:
                    status = ESME_RSYSERR
                self._on_submit_resp(status, sequence, raw[16:])
            elif command == ENQUIRE_LINK:
                self._wire.write(ENQUIRE_LINK_RESP, b"", sequence=sequence)
            elif command == UNBIND:
                self._wire.write(UNBIND_RESP, b"", sequence=sequence)
                raise SessionLost("the SMSC unbound the session")
            elif not command & RESPONSE_BIT and command != ALERT_NOTIFICATION:
                # (alert_notification has no answer)
                self._wire.write(GENERIC_NACK, b"", status=ESME_RINVCMDID, sequence=sequence)
        if deliveries:
            for sequence, answer in self._on_deliveries(deliveries):
                self._wire.write(DELIVER_SM_RESP, b"\0", status=answer, sequence=sequence)

    def _on_deliveries(self, deliveries: Sequence[tuple[int, bytes]]) -> list[tuple[int, int]]:
        """Hand deliver_sm over; (sequence, the status to answer the SMSC) for each."""
        answers: dict[int, int] = {}
        receipts: list[tuple[int, Receipt]] = []
        for sequence, raw in deliveries:
            try:
                pdu = smpp.parse_pdu(raw, client=NO_SEQUENCE, allow_unknown_opt_params=True)
                item = deliver_sm_read(pdu, tz=self._receipt_tz)
            except Exception:  # noqa: BLE001  (a PDU we cannot read must not end the session)
                logger.warning("unreadable deliver_sm from the SMSC: %s", raw.hex(),
                               exc_info=True)
                answers[sequence] = ESME_RX_P_APPN
                continue
            if item is None:
                answers[sequence] = ESME_ROK
            elif isinstance(item, Receipt):
                receipts.append((sequence, item))
            else:
                answers[sequence] = self._hand_over(self.on_inbound, item)
        if receipts:
            answer = self._hand_over(self.on_receipts, [receipt for _, receipt in receipts])
            answers.update((sequence, answer) for sequence, _ in receipts)
        return [(sequence, answers[sequence]) for sequence, _ in deliveries]

    @staticmethod
    def _hand_over(handler: Callable[[Any], None] | None, item: Any) -> int:
        if handler is None:
            return ESME_RX_T_APPN
        try:
            handler(item)
        except Exception:  # noqa: BLE001  (the SMSC offers it again: nothing is lost)
            logger.exception("deliver_sm handler failed for %r", item)
            return ESME_RX_T_APPN
        return ESME_ROK
