"""Celery tasks of the integration API."""

from __future__ import annotations

from celery import shared_task

from loyalty.integration.idempotency import idempotency_keys_purge


@shared_task(ignore_result=True)
def idempotency_keys_prune() -> int:
    """Forget Idempotency-Keys past ENGAGE_IDEMPOTENCY_TTL."""
    return idempotency_keys_purge()
