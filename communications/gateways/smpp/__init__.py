"""SMS over SMPP 3.4 (registry key `smpp`): the adapter in `client`, the wire in `protocol`,
GSM-7 / UCS-2 and the concatenation header in `encoding`, deliver_sm (receipts and members'
texts) in `receipts`. `manage.py smpp_listen <gateway id>` keeps a bind open for deliver_sm."""

from communications.gateways.smpp.client import (
    DELIVERIES_PER_HANDOVER,
    InboundHandler,
    ReceiptsHandler,
    SmppGateway,
)
from communications.gateways.smpp.receipts import (
    RECEIPT_STATUSES,
    InboundSms,
    deliver_sm_read,
    smpp_receipt_parse,
)

__all__ = [
    "DELIVERIES_PER_HANDOVER", "RECEIPT_STATUSES", "InboundHandler", "InboundSms",
    "ReceiptsHandler", "SmppGateway", "deliver_sm_read", "smpp_receipt_parse",
]
