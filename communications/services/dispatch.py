"""Sending a mailing's messages: batches claimed atomically, rendered, sent through the
gateway, and their results written back in bulk; claims never confirmed end `unknown`.

Every message is sent at most once per (mailing, member, channel): a batch claims its rows
before it sends, and a claim that is never confirmed ends as `unknown`, not resent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from communications.gateways import (
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.models import Gateway, Mailing, Message, MessageStatusChange
from communications.renderers import CompiledTemplate, member_context, member_value_paths
from communications.services.statuses import StatusChange, changes_record, receipts_apply
from members.models import Channel
from members.unsubscribe import unsubscribe_urls

logger = logging.getLogger(__name__)

Source = MessageStatusChange.Source

Status = Message.Status
SkipReason = Message.SkipReason
State = Mailing.State
# A transient error retries the message until it has been tried this often.
MAX_ATTEMPTS = 3


def messages_mark_unconfirmed_unknown(*, now: datetime | None = None) -> int:
    """Claims never confirmed within the claim timeout: the worker died mid-send. They may have
    reached the provider, so they end `unknown` (listed on the mailing), never resent."""
    now = now or timezone.now()
    detail = "claimed by a worker that never confirmed the send; not resent"
    with transaction.atomic():
        ids = list(Message.objects.select_for_update(skip_locked=True).filter(
            status=Status.SENDING, claimed_at__lt=now - settings.ENGAGE_CLAIM_TIMEOUT,
        ).values_list("pk", flat=True))
        Message.objects.filter(pk__in=ids).update(
            status=Status.UNKNOWN, error_code="unconfirmed", error=detail, updated_at=now)
        changes_record(changes=[StatusChange(pk, Status.UNKNOWN, now, "unconfirmed", detail)
                                for pk in ids], source=Source.SWEEPER, recorded_at=now)
    return len(ids)


def mailing_dispatch_enqueue(*, mailing_id: int) -> int:
    """Enqueue enough batch tasks to cover the queued messages; each claims its own rows."""
    from communications import tasks

    queued = Message.objects.filter(mailing_id=mailing_id, status=Status.QUEUED).count()
    batches = math.ceil(queued / settings.ENGAGE_BATCH_SIZE)
    Mailing.objects.filter(pk=mailing_id).update(last_dispatch_at=timezone.now())
    for _ in range(batches):
        tasks.dispatch_batch.delay(mailing_id)
    if not batches:
        mailing_complete_if_done(mailing_id=mailing_id)
    return batches


def messages_claim(*, mailing_id: int, limit: int) -> list[int]:
    """Atomically take up to `limit` queued messages of a sending mailing for this worker.

    The mailing row is locked first, as pause and cancel lock it before they touch messages:
    a claim waits for a cancel in progress (and then finds the mailing cancelled) instead of
    holding message rows the cancel waits for while it waits for the mailing row (a deadlock
    the 1M-member benchmark hit). Claims of one mailing take turns; each lasts milliseconds.
    SKIP LOCKED still keeps them off rows another transaction holds.
    """
    now = timezone.now()
    with transaction.atomic():
        if not (Mailing.objects.select_for_update(no_key=True)
                .filter(pk=mailing_id, state=State.SENDING).exists()):
            return []
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(mailing_id=mailing_id, status=Status.QUEUED)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Message.objects.filter(pk__in=ids).update(
                status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1,
                updated_at=now,
            )
            Mailing.objects.filter(pk=mailing_id).update(last_dispatch_at=now)
    return ids


def message_batch_dispatch(*, mailing_id: int, batch_size: int | None = None) -> dict[str, int]:
    """Claim one batch, render it, send it through the mailing's gateway, record the results."""
    ids = messages_claim(mailing_id=mailing_id, limit=batch_size or settings.ENGAGE_BATCH_SIZE)
    if not ids:
        mailing_complete_if_done(mailing_id=mailing_id)
        return {"claimed": 0}
    mailing = Mailing.objects.select_related("template", "gateway").get(pk=mailing_id)
    rows = list(
        Message.objects.filter(pk__in=ids).order_by("pk")
        .values("pk", "member_id", "address", "attempts", *member_value_paths())
    )
    template = CompiledTemplate(subject=mailing.template.subject, body=mailing.template.body,
                                html_body=mailing.template.html_body)
    links = (unsubscribe_urls(member_ids=[row["member_id"] for row in rows],
                              channel=Channel.EMAIL, mailing_id=mailing_id)
             if mailing.template.channel == Channel.EMAIL else {})
    outbound: list[OutboundMessage] = []
    render_failures: list[SendResult] = []
    for row in rows:
        link = links.get(row["member_id"])
        try:
            rendered = template.render(member_context(row), unsubscribe_url=link)
        except Exception as exc:  # noqa: BLE001  (a template failing for one member fails only them)
            render_failures.append(SendResult(row["pk"], error=GatewayError(
                f"template failed for this member: {exc}", code="render", permanent=True)))
            continue
        outbound.append(OutboundMessage(
            message_id=row["pk"], address=row["address"], subject=rendered.subject,
            body=rendered.body, html_body=rendered.html_body,
            headers=_list_unsubscribe_headers(link) if link else {},
        ))
    results = render_failures + gateway_send(gateway=mailing.gateway, batch=outbound)
    attempts = {row["pk"]: row["attempts"] for row in rows}
    counts = messages_record_results(results=results, attempts=attempts,
                                     gateway_id=mailing.gateway_id)
    if counts.get("retry"):
        from communications import tasks

        retry_after = max((r.error.retry_after or 0) for r in results if r.error) or 30
        transaction.on_commit(
            lambda: tasks.dispatch_batch.apply_async((mailing_id,), countdown=retry_after)
        )
    mailing_complete_if_done(mailing_id=mailing_id)
    return {"claimed": len(ids), **counts}


def _list_unsubscribe_headers(link: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click: bulk senders to Gmail and Yahoo must carry both.

    Providers honour one-click only on an https link in a DKIM-signed message, so
    ENGAGE_PUBLIC_URL must be https in production and the relay must sign these headers.
    """
    return {"List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def gateway_send(*, gateway: Gateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    """Send a batch through one gateway row: open, send, close; a failed open fails them all."""
    if not batch:
        return []
    config = GatewayConfig(
        gateway_id=gateway.pk, channel=gateway.channel, provider=gateway.provider,
        settings=gateway.settings,
        sender=gateway.sender or (settings.ENGAGE_DEFAULT_FROM_EMAIL
                                  if gateway.channel == Channel.EMAIL else ""),
        price_per_message=gateway.price_per_message,
    )
    try:
        adapter = gateway_for(config)
        adapter.open()
    except GatewayError as error:
        # Nothing went out: every message of the batch shares the connection failure.
        return [SendResult(m.message_id, error=error) for m in batch]
    try:
        results = adapter.send(batch)
    finally:
        adapter.close()
    return results


def messages_record_results(*, results: Sequence[SendResult], attempts: dict[int, int],
                            gateway_id: int | None) -> dict[str, int]:
    """Write a batch's outcomes back in bulk: one UPDATE per outcome kind and one INSERT of
    their history, none per row; then apply receipts that arrived before the send was known."""
    now = timezone.now()
    sent: list[tuple[Any, ...]] = []
    failed: list[tuple[Any, ...]] = []
    in_doubt: list[tuple[Any, ...]] = []
    retry: list[int] = []
    changes: list[StatusChange] = []
    for result in results:
        error = result.error
        if error is None:
            sent.append((result.message_id, result.provider_id, result.cost))
            changes.append(StatusChange(result.message_id, Status.SENT, now))
            continue
        if error.in_doubt:
            in_doubt.append((result.message_id, error.code, error.message))
            status = Status.UNKNOWN
        elif not error.permanent and attempts.get(result.message_id, 0) < MAX_ATTEMPTS:
            retry.append(result.message_id)
            status = Status.QUEUED  # the claim is given back, to be tried again
        else:
            failed.append((result.message_id, error.code, error.message))
            status = Status.FAILED
        changes.append(StatusChange(result.message_id, status, now, error.code, error.message))
    with transaction.atomic():
        _messages_set(rows=sent, columns=("provider_id", "cost"),
                      fixed={"status": Status.SENT, "sent_at": now, "updated_at": now,
                             "gateway_id": gateway_id})
        _messages_set(rows=failed, columns=("error_code", "error"),
                      fixed={"status": Status.FAILED, "updated_at": now,
                             "gateway_id": gateway_id})
        _messages_set(rows=in_doubt, columns=("error_code", "error"),
                      fixed={"status": Status.UNKNOWN, "updated_at": now,
                             "gateway_id": gateway_id})
        if retry:
            Message.objects.filter(pk__in=retry, status=Status.SENDING).update(
                status=Status.QUEUED, claimed_at=None, updated_at=now
            )
        changes_record(changes=changes, source=Source.DISPATCH, recorded_at=now)
        if sent and gateway_id is not None:
            receipts_apply(gateway_id=gateway_id,
                           provider_ids=[provider_id for _, provider_id, _ in sent if provider_id])
    return {"sent": len(sent), "failed": len(failed), "unknown": len(in_doubt),
            "retry": len(retry)}


# Columns whose VALUES may all be NULL need a type, or PostgreSQL reads them as text.
_COLUMN_CASTS = {"cost": "NUMERIC"}
_ROWS_PER_STATEMENT = 1000


def _messages_set(*, rows: Sequence[tuple[Any, ...]], columns: Sequence[str],
                  fixed: dict[str, Any]) -> None:
    """UPDATE message rows from a VALUES list: `rows` are (id, *columns) tuples.

    Django's bulk_update builds a CASE per column per row, which costs more than the send
    itself at a few hundred rows; a joined VALUES list is one cheap statement (PostgreSQL and
    SQLite 3.33+ both speak UPDATE ... FROM).
    """
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    names = ", ".join(qn(name) for name in ("id", *columns))
    assignments = ", ".join(
        [f"{qn(c)} = CAST(v.{qn(c)} AS {_COLUMN_CASTS[c]})" if c in _COLUMN_CASTS
         else f"{qn(c)} = v.{qn(c)}" for c in columns]
        + [f"{qn(c)} = %s" for c in fixed]
    )
    row_sql = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            cursor.execute(
                f"WITH v ({names}) AS (VALUES {', '.join([row_sql] * len(chunk))}) "
                f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{qn('id')} = v.{qn('id')}",
                [value for row in chunk for value in row] + list(fixed.values()),
            )


def mailing_complete_if_done(*, mailing_id: int) -> bool:
    """Mark a sending mailing completed once no message is queued or claimed."""
    if Message.objects.filter(
        mailing_id=mailing_id, status__in=[Status.QUEUED, Status.SENDING]
    ).exists():
        return False
    return bool(
        Mailing.objects.filter(pk=mailing_id, state=State.SENDING).update(
            state=State.COMPLETED, completed_at=timezone.now()
        )
    )
