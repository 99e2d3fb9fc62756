"""Celery tasks of campaigns: take plain values, call one service."""

from __future__ import annotations

from celery import shared_task

from campaigns import services


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def target_groups_reevaluate(member_ids: list[int] | None = None) -> dict[str, int]:
    """Watched groups brought up to date for these members (all when None). Safe to repeat:
    a second run finds no difference and records nothing."""
    return services.target_groups_reevaluate(member_ids=member_ids)
