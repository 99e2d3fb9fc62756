"""Celery tasks of outgoing webhooks: thin, each calls the relay or the delivery loop."""

from __future__ import annotations

from celery import shared_task

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.relay import webhooks_relay_pass


@shared_task(ignore_result=True)
def webhooks_relay() -> None:
    """Relay new events into deliveries, then send what is due (new ones, retries, replays)."""
    webhooks_relay_pass()
    deliveries_send_due()

