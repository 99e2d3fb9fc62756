"""What the SMSC delivers to us in deliver_sm: delivery receipts, parsed into Engage's
statuses, and members' own texts (MO), such as a STOP.

A receipt's text follows SMPP 3.4 Appendix B ("id:… sub:… dlvrd:… submit date:… done date:…
stat:… err:… text:…"); SMSCs may also carry the id and state in the receipted_message_id and
message_state TLVs, which win: the TLV is the id exactly as submit_sm_resp gave it, while some
SMSCs print the one in the text in another base.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

from communications.gateways.base import Receipt
from communications.gateways.smpp.encoding import ESM_UDHI, text_decode, udh_strip

logger = logging.getLogger(__name__)

ESM_RECEIPT, ESM_INTERMEDIATE = 0x04, 0x20

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
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
_RECEIPT_FIELD = re.compile(r"(id|stat|err|submit date|done date)\s*:\s*(\S*)", re.IGNORECASE)
_RECEIPT_TEXT = re.compile(r"\btext\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class InboundSms:
    """A member's text to our sender (MO); `phone` is E.164 when the SMSC marks it international."""

    phone: str
    text: str
    received_at: datetime
    recipient: str = ""


def smpp_receipt_parse(short_message: bytes | str, *, tz: tzinfo = UTC) -> Receipt | None:
    """A delivery receipt's text as a Receipt, or None when it is not a final state or not a
    receipt.

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


def deliver_sm_read(pdu: Any, *, tz: tzinfo = UTC) -> Receipt | InboundSms | None:
    """What a parsed deliver_sm (smpplib) carries: a final receipt, a member's text, or None
    (an intermediate or unreadable receipt, acknowledged and dropped)."""
    esm_class = pdu.esm_class or 0
    message = pdu.short_message or pdu.message_payload or b""
    if esm_class & 0x3C in (ESM_RECEIPT, ESM_INTERMEDIATE):
        receipt = smpp_receipt_parse(message, tz=tz)
        tlv_id = _text(pdu.receipted_message_id)
        if receipt is None and tlv_id and pdu.message_state in MESSAGE_STATES:
            receipt = _receipt_build(provider_id=tlv_id, stat=MESSAGE_STATES[pdu.message_state],
                                     err="", occurred_at=None, detail=_text(message))
        if receipt is None:
            logger.info("SMPP receipt ignored (not final or unreadable): %r", message)
            return None
        return replace(receipt, provider_id=tlv_id) if tlv_id else receipt
    if esm_class & ESM_UDHI:
        message = udh_strip(message)
    phone = _text(pdu.source_addr)
    if pdu.source_addr_ton == 1 and phone.isdigit():
        phone = f"+{phone}"
    return InboundSms(phone=phone, text=text_decode(message, pdu.data_coding or 0),
                      received_at=datetime.now(UTC), recipient=_text(pdu.destination_addr))


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


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
