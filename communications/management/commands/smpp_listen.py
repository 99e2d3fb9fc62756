"""`manage.py smpp_listen <gateway id>`: stay bound to an SMPP gateway's SMSC for deliver_sm.

Delivery receipts go to the receipts inbox (`receipts_record`, as the webhooks' do) and are
applied in bulk by a worker; a member's STOP goes to `sms_inbound_apply`. Run one per SMPP
gateway, beside the workers; SIGTERM or Ctrl-C unbinds and exits. A lost session is bound
again after `--reconnect-delay` seconds, with the gateway's settings read afresh.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from communications.gateways import GatewayConfig, GatewayError, Receipt, gateway_for
from communications.gateways.smpp import (
    InboundHandler,
    InboundSms,
    ReceiptsHandler,
    SmppGateway,
)
from communications.models import Gateway
from communications.services.statuses import receipts_record
from members.services.keywords import sms_inbound_apply

logger = logging.getLogger(__name__)

# How long one listen() lasts: the stop flag and the database connection are checked between.
LISTEN_SLICE_S = 1.0


class Command(BaseCommand):
    help = ("Stay bound to an SMPP gateway's SMSC: delivery receipts are stored and applied "
            "like webhook receipts, inbound STOP withdraws SMS consent.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("gateway_id", type=int, help="The SMPP gateway's id.")
        parser.add_argument("--seconds", type=float, default=None,
                            help="Stop after this long (default: run until SIGTERM).")
        parser.add_argument("--reconnect-delay", type=float, default=5.0,
                            help="Seconds to wait before binding again after a lost session.")

    def handle(self, *args: Any, gateway_id: int, seconds: float | None,
               reconnect_delay: float, **options: Any) -> None:
        stop = threading.Event()
        deadline = None if seconds is None else time.monotonic() + seconds

        def left() -> float:
            return float("inf") if deadline is None else deadline - time.monotonic()

        with _stopped_by_signals(stop):
            while not stop.is_set() and left() > 0:
                gateway = _smpp_gateway(gateway_id)
                adapter = gateway_for(_config(gateway))
                assert isinstance(adapter, SmppGateway)
                try:
                    adapter.open()
                    logger.info("smpp_listen: bound to gateway %s (%s)", gateway.pk, gateway.name)
                    while not stop.is_set() and (remaining := left()) > 0:
                        _connection_refresh()
                        adapter.listen(min(LISTEN_SLICE_S, remaining),
                                       on_receipts=_receipts_handler(gateway),
                                       on_inbound=_inbound_handler(gateway))
                except GatewayError as error:
                    if error.permanent:
                        raise CommandError(f"gateway {gateway.pk}: {error.message}") from error
                    logger.warning("smpp_listen: gateway %s: %s; binding again in %g s",
                                   gateway.pk, error.message, reconnect_delay)
                    stop.wait(max(0.0, min(reconnect_delay, left())))
                finally:
                    adapter.close()


def _smpp_gateway(gateway_id: int) -> Gateway:
    # Inactive gateways too: a member's STOP must be honoured after the program stopped
    # sending through that provider.
    gateway = Gateway.objects.filter(pk=gateway_id).first()
    if gateway is None or gateway.provider != SmppGateway.provider:
        raise CommandError(f"no SMPP gateway with id {gateway_id}")
    return gateway


def _config(gateway: Gateway) -> GatewayConfig:
    return GatewayConfig(gateway_id=gateway.pk, channel=gateway.channel,
                         provider=gateway.provider, settings=gateway.adapter_settings(),
                         sender=gateway.sender, price_per_message=gateway.price_per_message)


def _receipts_handler(gateway: Gateway) -> ReceiptsHandler:
    def on_receipts(receipts: Sequence[Receipt]) -> None:
        receipts_record(gateway_id=gateway.pk, receipts=receipts)
    return on_receipts


def _inbound_handler(gateway: Gateway) -> InboundHandler:
    def on_inbound(sms: InboundSms) -> None:
        try:
            sms_inbound_apply(phone=sms.phone, text=sms.text, received_at=sms.received_at,
                              gateway_name=gateway.name)
        except ValidationError as error:
            # Acknowledged and dropped: offered again, it would fail the same way forever.
            logger.warning("smpp_listen: inbound SMS on gateway %s not applied: %s",
                           gateway.pk, "; ".join(error.messages))
    return on_inbound


def _connection_refresh() -> None:
    # A listener lives for days: replace a database connection that died or grew old, as
    # Django does around each request (never inside a transaction, as under a test).
    if not connection.in_atomic_block:
        close_old_connections()


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    for number in previous:
        signal.signal(number, lambda *_: stop.set())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
