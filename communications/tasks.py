"""Thin Celery tasks: take ids, call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from communications import services


@shared_task(ignore_result=True)
def start_due_mailings() -> dict[str, Any]:
    return services.mailings_tick()


@shared_task(ignore_result=True)
def prepare_mailing(mailing_id: int) -> int:
    return services.mailing_prepare(mailing_id=mailing_id)


@shared_task(ignore_result=True)
def freeze_audience_part(mailing_id: int) -> int:
    return services.audience_parts_freeze(mailing_id=mailing_id)


@shared_task(ignore_result=True)
def dispatch_batch(mailing_id: int, channel: str | None = None) -> dict[str, int]:
    return services.message_batch_dispatch(mailing_id=mailing_id, channel=channel)


@shared_task(ignore_result=True)
def attribute_orders() -> int:
    from communications.services.attribution import attribution_pass

    return attribution_pass()


@shared_task(ignore_result=True)
def send_transactional_message(message_id: int) -> str:
    from communications.transactional import transactional_message_send

    return transactional_message_send(message_id=message_id)


@shared_task(ignore_result=True)
def apply_receipts() -> int:
    from communications.services.statuses import (
        RECEIPTS_PER_APPLY,
        receipts_apply,
        receipts_apply_started,
    )

    receipts_apply_started()
    # One task per webhook call, which may store more than one pass takes: a full pass means
    # more may wait, and nothing else would come back for them.
    applied = done = receipts_apply()
    while done == RECEIPTS_PER_APPLY:
        done = receipts_apply()
        applied += done
    return applied


@shared_task(ignore_result=True)
def prune_receipts() -> int:
    from communications.services.statuses import receipts_prune

    return receipts_prune()


@shared_task(ignore_result=True)
def check_gateways_health() -> int:
    """Periodic: one probe task per active gateway, so a provider that hangs until its timeout
    holds up no other gateway's probe."""
    from communications.models import Gateway

    ids = list(Gateway.objects.filter(is_active=True).values_list("pk", flat=True))
    for gateway_id in ids:
        check_gateway_health.delay(gateway_id)
    return len(ids)


@shared_task(ignore_result=True)
def check_gateway_health(gateway_id: int) -> bool | None:
    from communications.models import Gateway
    from communications.services.gateways import gateway_health_check

    gateway = Gateway.objects.filter(pk=gateway_id).first()
    if gateway is None:
        return None
    return gateway_health_check(gateway=gateway).last_health_ok


@shared_task(ignore_result=True)
def read_trigger_events() -> dict[int, dict[str, int]]:
    """Events recorded since the last pass become trigger mailings' messages (nudged after the
    ingest commits, and on the beat schedule)."""
    from communications.services.triggers import trigger_events_read

    return trigger_events_read()


@shared_task(ignore_result=True)
def run_date_triggers() -> dict[int, dict[str, int]]:
    """Today's birthdays, expiring vouchers and lapsed buyers, in each member's time zone."""
    from communications.services.trigger_dates import trigger_dates_run

    return trigger_dates_run()
