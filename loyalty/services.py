"""Use cases that change loyalty data: the event log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from loyalty.models import Event, Order, OrderLine

CHUNK = 5_000


def _batched(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    # itertools.batched arrives with Python 3.12; the project runs on 3.11.
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def events_record(*, type: str, entries: Iterable[tuple[int | None, Mapping[str, Any]]],
                  occurred_at: datetime | None = None, version: int = 1) -> int:
    """Append one event of `type` per (member_id, payload), in one bulk write.

    Callers run it inside the transaction of the change it describes, so an event exists
    exactly when its change committed.
    """
    occurred_at = occurred_at or timezone.now()
    written = 0
    with transaction.atomic():
        for chunk in _batched(entries, CHUNK):
            Event.objects.bulk_create([
                Event(id=uuid.uuid4(), type=type, occurred_at=occurred_at, member_id=member_id,
                      payload=dict(payload), version=version)
                for member_id, payload in chunk])
            written += len(chunk)
    return written


def order_lines_follow(*, order: Order) -> int:
    """Give the order's lines its current member and time (they keep a copy for purchase
    rules), after the order was edited; returns how many lines changed."""
    return (OrderLine.objects.filter(order=order)
            .exclude(member_id=order.member_id, placed_at=order.placed_at)
            .update(member_id=order.member_id, placed_at=order.placed_at))
