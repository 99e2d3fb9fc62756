"""Message statuses: one forward-only state machine for every channel, and provider receipts.

    created -> queued -> sending -> sent -> delivered -> opened -> clicked
                                \\-> unknown (in doubt)      \\-> bounced / complained
    failed / rejected / undelivered / expired / cancelled / skipped end it otherwise.

Providers report out of order and more than once (a click before its open, a receipt resent
after a timeout, a delivery report that overtakes our own record of the send), so a change is
applied only when it moves the message forward (`STATUS_RANK`), and every change that is made
is recorded with its time and source (`MessageStatusChange`). Both are set-based: one UPDATE
per few hundred changes, one INSERT for their history, never a query per message.

Receipts are stored first (`ProviderReceipt`: the webhook answers at once) and applied in bulk
by `receipts_apply`, matched to messages on (gateway, provider id). One that arrives before the
send was recorded waits; `messages_record_results` applies it as soon as the provider id is
known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone

from communications.gateways import Receipt
from communications.models import Message, MessageStatusChange, ProviderReceipt
from members.models import Suppression
from members.services.suppressions import suppressions_add_many

Status = Message.Status
Source = MessageStatusChange.Source

FINAL = 100
# How far along a message is: a change to a status of a higher rank moves it, any other is
# ignored. Equal ranks are alternatives (delivered or undelivered), so the first one stands.
STATUS_RANK: dict[str, int] = {
    Status.CREATED: 0,
    Status.QUEUED: 1,
    Status.SENDING: 2,
    Status.UNKNOWN: 3,
    Status.SENT: 4,
    Status.DELIVERED: 5,
    Status.UNDELIVERED: 5,
    Status.EXPIRED: 5,
    Status.REJECTED: 5,
    # A bounce may come after the receiving server accepted the mail (delivered).
    Status.OPENED: 6,
    Status.BOUNCED: 6,
    Status.CLICKED: 7,
    # A complaint is the member's last word, even after a click.
    Status.COMPLAINED: 8,
    # Decided by Engage before or instead of any provider: nothing a provider says moves them.
    Status.FAILED: FINAL,
    Status.CANCELLED: FINAL,
    Status.SKIPPED: FINAL,
}
# What a provider may report about a message it accepted.
RECEIPT_STATUSES = frozenset({
    Status.DELIVERED, Status.UNDELIVERED, Status.EXPIRED, Status.REJECTED, Status.BOUNCED,
    Status.OPENED, Status.CLICKED, Status.COMPLAINED,
})
# Receipts that put the address on the suppression list.
SUPPRESSING = {Status.BOUNCED: Suppression.Reason.HARD_BOUNCE,
               Status.COMPLAINED: Suppression.Reason.COMPLAINT}
_ROWS_PER_STATEMENT = 500
RECEIPTS_PER_APPLY = 5_000


@dataclass(frozen=True)
class StatusChange:
    message_id: int
    status: str
    occurred_at: datetime
    code: str = ""
    detail: str = ""


def _rank_sql(column: str) -> str:
    whens = " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in STATUS_RANK.items())
    return f"CASE {column} {whens} END"


def _rounds(changes: Iterable[StatusChange]) -> list[list[StatusChange]]:
    """Changes in rounds with at most one per message, lowest rank first, so that delivered,
    opened and clicked reported in one batch are all made and all recorded, in order."""
    per_message: dict[int, list[StatusChange]] = defaultdict(list)
    for change in changes:
        per_message[change.message_id].append(change)
    rounds: list[list[StatusChange]] = []
    for mine in per_message.values():
        mine.sort(key=lambda change: (STATUS_RANK[change.status], change.occurred_at))
        for index, change in enumerate(mine):
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(change)
    return rounds


def message_statuses_apply(*, changes: Iterable[StatusChange], source: str) -> int:
    """Move messages forward and record each change made; returns how many were made.

    A change that would not move its message forward (a receipt repeated, or overtaken by a
    later one) changes nothing and is not recorded. Bounces and complaints suppress the
    address.
    """
    now = timezone.now()
    made: list[tuple[StatusChange, str, str]] = []  # (change, channel, address)
    with transaction.atomic():
        for round_ in _rounds(changes):
            for start in range(0, len(round_), _ROWS_PER_STATEMENT):
                made += _forward(round_[start:start + _ROWS_PER_STATEMENT], now)
        changes_record(changes=[change for change, _, _ in made], source=source,
                       recorded_at=now)
        suppressed: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for change, channel, address in made:
            if change.status in SUPPRESSING and address:
                suppressed[SUPPRESSING[change.status]].append((channel, address))
        for reason, addresses in suppressed.items():
            suppressions_add_many(addresses=addresses, reason=reason, source=source)
    return len(made)


def _forward(changes: Sequence[StatusChange], now: datetime) -> list[tuple[StatusChange, str,
                                                                             str]]:
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    by_id = {change.message_id: change for change in changes}
    row = "(%s, %s, %s, %s)"
    params: list[object] = []
    for change in changes:
        params += [change.message_id, change.status, STATUS_RANK[change.status],
                   change.occurred_at]
    opened = f"'{Status.OPENED}', '{Status.CLICKED}'"
    sql = (
        f"WITH v (id, status, rank, occurred_at) AS (VALUES {', '.join([row] * len(changes))}) "
        f"UPDATE {table} SET status = v.status, updated_at = %s, "
        f"delivered_at = CASE WHEN v.status = '{Status.DELIVERED}' THEN v.occurred_at "
        f"ELSE delivered_at END, "
        f"opened_at = CASE WHEN v.status IN ({opened}) THEN COALESCE(opened_at, v.occurred_at) "
        f"ELSE opened_at END, "
        f"clicked_at = CASE WHEN v.status = '{Status.CLICKED}' THEN v.occurred_at "
        f"ELSE clicked_at END "
        f"FROM v WHERE {table}.id = v.id AND {_rank_sql(f'{table}.status')} < v.rank "
        f"RETURNING {table}.id, {table}.channel, {table}.address"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now])
        return [(by_id[message_id], channel, address)
                for message_id, channel, address in cursor.fetchall()]


def changes_record(*, changes: Sequence[StatusChange], source: str,
                   recorded_at: datetime | None = None) -> None:
    """Append status changes already made to the messages' history, in one INSERT."""
    recorded_at = recorded_at or timezone.now()
    MessageStatusChange.objects.bulk_create(
        [MessageStatusChange(message_id=change.message_id, status=change.status,
                             occurred_at=change.occurred_at, recorded_at=recorded_at,
                             source=source, code=change.code[:64], detail=change.detail)
         for change in changes],
        batch_size=_ROWS_PER_STATEMENT,
    )


# --- receipts -------------------------------------------------------------------------------

def receipts_record(*, gateway_id: int, receipts: Sequence[Receipt]) -> None:
    """Store a provider's receipts to be applied in bulk, and have them applied.

    What webhooks call: one INSERT, so the provider gets its answer at once. The same receipt
    sent again is dropped by the (gateway, provider id, status) constraint.
    """
    from communications import tasks

    now = timezone.now()
    rows = [ProviderReceipt(gateway_id=gateway_id, provider_id=receipt.provider_id,
                            status=receipt.status, occurred_at=receipt.occurred_at,
                            code=receipt.code[:64], detail=receipt.detail, received_at=now)
            for receipt in receipts]
    with transaction.atomic():
        ProviderReceipt.objects.bulk_create(rows, ignore_conflicts=True,
                                            batch_size=_ROWS_PER_STATEMENT)
        transaction.on_commit(tasks.apply_receipts.delay)


def receipts_apply(*, gateway_id: int | None = None, provider_ids: Sequence[str] | None = None,
                   limit: int = RECEIPTS_PER_APPLY) -> int:
    """Apply stored receipts whose message is known, oldest first; returns how many.

    Receipts are taken with SKIP LOCKED, so several workers apply disjoint ones. Those whose
    provider id matches no message yet stay for a later call.
    """
    qn = connection.ops.quote_name
    receipts, messages = qn(ProviderReceipt._meta.db_table), qn(Message._meta.db_table)
    where, params = ["r.applied_at IS NULL"], []
    if gateway_id is not None:
        where.append("r.gateway_id = %s")
        params.append(gateway_id)
    if provider_ids is not None:
        if not provider_ids:
            return 0
        where.append(f"r.provider_id IN ({', '.join(['%s'] * len(provider_ids))})")
        params += list(provider_ids)
    lock = " FOR UPDATE OF r SKIP LOCKED" if connection.features.has_select_for_update else ""
    sql = (f"SELECT r.id, m.id, r.status, r.occurred_at, r.code, r.detail FROM {receipts} r "
           f"JOIN {messages} m ON m.gateway_id = r.gateway_id AND m.provider_id = r.provider_id "
           f"WHERE {' AND '.join(where)} ORDER BY r.id LIMIT %s{lock}")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, limit])
            rows = cursor.fetchall()
        if not rows:
            return 0
        message_statuses_apply(
            changes=[StatusChange(message_id, status, _aware(occurred_at), code, detail)
                     for _, message_id, status, occurred_at, code, detail in rows],
            source=Source.RECEIPT)
        ProviderReceipt.objects.filter(pk__in=[row[0] for row in rows]).update(
            applied_at=timezone.now())
    return len(rows)


def _aware(moment: datetime) -> datetime:
    # SQLite (the demo) hands raw queries' times back naive, in UTC as stored.
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)
