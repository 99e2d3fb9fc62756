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
known. One that never matches (a long SMS's other parts) is deleted by `receipts_prune` once
ENGAGE_RECEIPT_RETENTION_DAYS have passed.

On PostgreSQL the bulk writes pass one array per column (`unnest`): the statement is the same
short text for any number of rows, where Django's bulk_create compiles a placeholder per value.

A mailing's message delivered, opened or clicked is also an event of the loyalty event log
(MESSAGE_DELIVERED / OPENED / CLICKED, `message_events_record`), written in the same transaction
as the change, so webhooks, connectors and triggers hear of it once and only if it happened.

A push token the provider refuses for good deactivates the member's device
(`push_devices_deactivate`, called with a batch's results).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone
from psycopg.types.json import Jsonb

from communications.gateways import Receipt, SendResult
from communications.gateways.base import dead_address_codes
from communications.models import Message, MessageStatusChange, ProviderReceipt
from communications.ratelimit import ratelimit_redis
from loyalty.integration.events import events_relay_after_commit
from loyalty.models import Event
from members.models import Channel, Device, MessengerAccount, Suppression
from members.services.suppressions import suppressions_add_many

logger = logging.getLogger(__name__)

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
# Rows per statement when they travel as one array per column (PostgreSQL).
_ARRAY_ROWS_PER_STATEMENT = 5_000
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
    made: list[MadeChange] = []
    with transaction.atomic():
        for round_ in _rounds(changes):
            step = _ARRAY_ROWS_PER_STATEMENT if connection.vendor == "postgresql" else \
                _ROWS_PER_STATEMENT
            for start in range(0, len(round_), step):
                made += _forward(round_[start:start + step], now)
        changes_record(changes=[made_change.change for made_change in made], source=source,
                       recorded_at=now)
        message_events_record(made=made, recorded_at=now)
        suppressed: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for made_change in made:
            if made_change.change.status in SUPPRESSING and made_change.address:
                suppressed[SUPPRESSING[made_change.change.status]].append(
                    (made_change.channel, made_change.address))
        for reason, addresses in suppressed.items():
            suppressions_add_many(addresses=addresses, reason=reason, source=source)
    return len(made)


@dataclass(frozen=True)
class MadeChange:
    """A change that moved its message, with what the message is (returned by the UPDATE)."""

    change: StatusChange
    channel: str
    address: str
    member_id: int | None
    mailing_id: int | None
    is_test: bool


def _forward(changes: Sequence[StatusChange], now: datetime) -> list[MadeChange]:
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    by_id = {change.message_id: change for change in changes}
    if connection.vendor == "postgresql":
        # One array per column: the same short statement for any number of changes.
        rows = ("SELECT * FROM unnest(%s::bigint[], %s::text[], %s::int[], "
                "%s::timestamptz[])")
        params: list[object] = [[change.message_id for change in changes],
                                [change.status for change in changes],
                                [STATUS_RANK[change.status] for change in changes],
                                [change.occurred_at for change in changes]]
    else:
        rows = "VALUES " + ", ".join(["(%s, %s, %s, %s)"] * len(changes))
        params = [value for change in changes for value in (
            change.message_id, change.status, STATUS_RANK[change.status], change.occurred_at)]
    opened = f"'{Status.OPENED}', '{Status.CLICKED}'"
    sql = (
        f"WITH v (id, status, rank, occurred_at) AS ({rows}) "
        f"UPDATE {table} SET status = v.status, updated_at = %s, "
        f"delivered_at = CASE WHEN v.status = '{Status.DELIVERED}' THEN v.occurred_at "
        f"ELSE delivered_at END, "
        f"opened_at = CASE WHEN v.status IN ({opened}) THEN COALESCE(opened_at, v.occurred_at) "
        f"ELSE opened_at END, "
        f"clicked_at = CASE WHEN v.status = '{Status.CLICKED}' THEN v.occurred_at "
        f"ELSE clicked_at END "
        f"FROM v WHERE {table}.id = v.id AND {_rank_sql(f'{table}.status')} < v.rank "
        f"RETURNING {table}.id, {table}.channel, {table}.address, {table}.member_id, "
        f"{table}.mailing_id, {table}.is_test"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now])
        return [MadeChange(by_id[message_id], *message)
                for message_id, *message in cursor.fetchall()]


# The statuses the event log hears about (MESSAGE_DELIVERED / OPENED / CLICKED), so that
# webhooks, connectors and triggers see a mailing's engagement as it happens.
STATUS_EVENTS = {Status.DELIVERED: Event.Type.MESSAGE_DELIVERED,
                 Status.OPENED: Event.Type.MESSAGE_OPENED,
                 Status.CLICKED: Event.Type.MESSAGE_CLICKED}


def message_events_record(*, made: Sequence[MadeChange], recorded_at: datetime) -> int:
    """MESSAGE_DELIVERED / OPENED / CLICKED in the event log for the changes just made to
    mailings' messages (not test sends, not transactional messages such as sign-in codes), in
    the same transaction and one INSERT; returns how many."""
    events = [made_change for made_change in made
              if made_change.change.status in STATUS_EVENTS and made_change.mailing_id
              and not made_change.is_test]
    if not events:
        return 0
    payloads = [{"message_id": e.change.message_id, "mailing_id": e.mailing_id,
                 "channel": e.channel, "code": e.change.code} for e in events]
    if connection.vendor != "postgresql":
        Event.objects.bulk_create([Event(
            id=uuid.uuid4(), type=STATUS_EVENTS[e.change.status], occurred_at=e.change.occurred_at,
            member_id=e.member_id, payload=payload, version=1, recorded_at=recorded_at)
            for e, payload in zip(events, payloads, strict=True)])
    else:
        _insert_unnest(
            Event,
            fixed={"version": ("smallint", 1), "recorded_at": ("timestamptz", recorded_at)},
            columns={"id": ("uuid", [uuid.uuid4() for _ in events]),
                     "type": ("text", [STATUS_EVENTS[e.change.status].value for e in events]),
                     "occurred_at": ("timestamptz", [e.change.occurred_at for e in events]),
                     "member_id": ("bigint", [e.member_id for e in events]),
                     "payload": ("jsonb", [Jsonb(payload) for payload in payloads])})
    events_relay_after_commit()
    return len(events)


def changes_record(*, changes: Sequence[StatusChange], source: str,
                   recorded_at: datetime | None = None) -> None:
    """Append status changes already made to the messages' history, in one INSERT."""
    if not changes:
        return
    recorded_at = recorded_at or timezone.now()
    if connection.vendor != "postgresql":
        MessageStatusChange.objects.bulk_create(
            [MessageStatusChange(message_id=change.message_id, status=change.status,
                                 occurred_at=change.occurred_at, recorded_at=recorded_at,
                                 source=source, code=change.code[:64], detail=change.detail)
             for change in changes],
            batch_size=_ROWS_PER_STATEMENT,
        )
        return
    # One array per column: the statement's text is the same for any number of rows, so
    # neither Django nor PostgreSQL compiles a few thousand placeholders per batch.
    _insert_unnest(
        MessageStatusChange,
        fixed={"recorded_at": ("timestamptz", recorded_at), "source": ("text", source)},
        columns={"message_id": ("bigint", [change.message_id for change in changes]),
                 "status": ("text", [change.status for change in changes]),
                 "occurred_at": ("timestamptz", [change.occurred_at for change in changes]),
                 "code": ("text", [change.code[:64] for change in changes]),
                 "detail": ("text", [change.detail for change in changes])},
    )


def _insert_unnest(model: type[Model], *, fixed: dict[str, tuple[str, Any]],
                   columns: dict[str, tuple[str, list[Any]]], on_conflict: str = "") -> None:
    """`INSERT INTO <model> (...) SELECT <fixed>, <columns> FROM unnest(<one array each>)`
    (PostgreSQL). `fixed` maps a column to its SQL type and the value of every row; `columns`
    a column to its SQL type and its values, one per row."""
    qn = connection.ops.quote_name
    names = ", ".join(qn(name) for name in [*fixed, *columns])
    selected = ", ".join([f"%s::{sql_type}" for sql_type, _ in fixed.values()]
                         + [f"v.{qn(name)}" for name in columns])
    arrays = ", ".join(f"%s::{sql_type}[]" for sql_type, _ in columns.values())
    sql = (f"INSERT INTO {qn(model._meta.db_table)} ({names}) SELECT {selected} "
           f"FROM unnest({arrays}) AS v ({', '.join(qn(name) for name in columns)}){on_conflict}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, value in fixed.values()]
                       + [per_row for _, per_row in columns.values()])


# --- push tokens ----------------------------------------------------------------------------

# Provider codes after which a push token will never work again (each adapter names its own).
DEAD_TOKEN_CODES = dead_address_codes(frozenset({Channel.PUSH}))


def push_devices_deactivate(*, results: Sequence[SendResult]) -> int:
    """Deactivate the devices whose token the push provider refused for good (FCM's
    UNREGISTERED, or INVALID_ARGUMENT naming the registration token), in one UPDATE; returns
    how many.

    The device is the member's with the token the message went to; no snapshot addresses it
    again. Other failures (a payload too large, a provider outage) say nothing about it.
    """
    ids = [result.message_id for result in results
           if result.error is not None and result.error.permanent
           and result.error.code in DEAD_TOKEN_CODES]
    if not ids:
        return 0
    qn = connection.ops.quote_name
    devices, messages = qn(Device._meta.db_table), qn(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {devices} SET is_active = %s FROM {messages} m "
            f"WHERE m.id IN ({', '.join(['%s'] * len(ids))}) AND m.channel = %s "
            f"AND {devices}.member_id = m.member_id AND {devices}.token = m.address "
            f"AND {devices}.is_active",
            [False, *ids, Channel.PUSH])
        return cursor.rowcount


# Messenger answers that the member's account cannot be reached by this sender any more.
DEAD_ACCOUNT_CODES = dead_address_codes(frozenset({Channel.VIBER, Channel.SOCIAL}))


def messenger_accounts_deactivate(*, results: Sequence[SendResult]) -> int:
    """Deactivate the Viber / social accounts the provider said are gone for good (the
    member is not on Viber any more, blocked the bot, the chat does not exist), in one
    UPDATE; returns how many. The next snapshot finds no address there and the cascade, if
    any, moves the member to the next channel."""
    ids = [result.message_id for result in results
           if result.error is not None and result.error.permanent
           and result.error.code in DEAD_ACCOUNT_CODES]
    if not ids:
        return 0
    qn = connection.ops.quote_name
    accounts, messages = qn(MessengerAccount._meta.db_table), qn(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {accounts} SET is_active = %s FROM {messages} m "
            f"WHERE m.id IN ({', '.join(['%s'] * len(ids))}) AND m.channel IN (%s, %s) "
            f"AND {accounts}.member_id = m.member_id AND {accounts}.account_id = m.address "
            f"AND {accounts}.is_active",
            [False, *ids, Channel.VIBER, Channel.SOCIAL])
        return cursor.rowcount


# --- receipts -------------------------------------------------------------------------------

def receipts_record(*, gateway_id: int, receipts: Sequence[Receipt]) -> None:
    """Store a provider's receipts to be applied in bulk, and have them applied.

    What webhooks call: one INSERT, so the provider gets its answer at once. The same receipt
    sent again is dropped by the (gateway, provider id, status) constraint.
    """

    if not receipts:
        return
    # In key order: two calls inserting some of the same receipts in different orders each
    # waited for the other's row in the unique index, and PostgreSQL killed one as a deadlock
    # (receipts_storm, issue 10). Arrival order within a batch carries no meaning for applying
    # (_rounds orders each message's changes by rank and time).
    receipts = sorted(receipts, key=lambda receipt: (receipt.provider_id, receipt.status))
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One statement whatever the batch's size: Django compiling a 500-row bulk INSERT
            # was half of the webhook's time (its p99 went from 118-341 ms to 84-133 ms).
            _insert_unnest(
                ProviderReceipt,
                fixed={"gateway_id": ("bigint", gateway_id), "received_at": ("timestamptz", now)},
                columns={
                    "provider_id": ("text", [receipt.provider_id for receipt in receipts]),
                    "status": ("text", [receipt.status for receipt in receipts]),
                    "occurred_at": ("timestamptz", [receipt.occurred_at for receipt in receipts]),
                    "code": ("text", [receipt.code[:64] for receipt in receipts]),
                    "detail": ("text", [receipt.detail for receipt in receipts]),
                },
                on_conflict=" ON CONFLICT DO NOTHING")
        else:
            ProviderReceipt.objects.bulk_create(
                [ProviderReceipt(gateway_id=gateway_id, provider_id=receipt.provider_id,
                                 status=receipt.status, occurred_at=receipt.occurred_at,
                                 code=receipt.code[:64], detail=receipt.detail, received_at=now)
                 for receipt in receipts],
                ignore_conflicts=True, batch_size=_ROWS_PER_STATEMENT)
        transaction.on_commit(receipts_apply_enqueue)


# While an apply task is queued and not yet started, further webhook calls need none of their
# own: it will find their receipts too. The flag expires in case the task is lost (the tick
# also applies recent receipts).
APPLY_PENDING_KEY = "engage:receipts:apply-pending"
APPLY_PENDING_TTL_S = 10


def receipts_apply_enqueue() -> None:
    """Have the stored receipts applied: one task, unless one is already waiting to start.

    A task per webhook call spent the workers' CPU on hundreds of near-empty passes while the
    webhook waited for the same cores (ack p99 104 ms at 17k receipts/s on 2 cores)."""
    from communications import tasks

    client = ratelimit_redis()
    if client is not None:
        try:
            if not client.set(APPLY_PENDING_KEY, "1", nx=True, ex=APPLY_PENDING_TTL_S):
                return
        except redis.RedisError as error:
            logger.warning("receipts: apply flag unavailable, enqueuing anyway: %s", error)
    tasks.apply_receipts.delay()


def receipts_apply_started() -> None:
    """Called by the apply task before it reads: receipts stored from now on need a task of
    their own, so the flag is cleared before, never after, the read."""
    client = ratelimit_redis()
    if client is not None:
        try:
            client.delete(APPLY_PENDING_KEY)
        except redis.RedisError as error:
            logger.warning("receipts: apply flag not cleared: %s", error)


def receipts_apply(*, gateway_id: int | None = None, provider_ids: Sequence[str] | None = None,
                   received_after: datetime | None = None,
                   limit: int = RECEIPTS_PER_APPLY) -> int:
    """Apply stored receipts whose message is known, oldest first; returns how many.

    Receipts are taken with SKIP LOCKED, so several workers apply disjoint ones. Those whose
    provider id matches no message yet stay for a later call.
    """
    qn = connection.ops.quote_name
    receipts, messages = qn(ProviderReceipt._meta.db_table), qn(Message._meta.db_table)
    where, params = ["r.applied_at IS NULL"], []
    if received_after is not None:
        where.append("r.received_at > %s")
        params.append(received_after)
    if gateway_id is not None:
        where.append("r.gateway_id = %s")
        params.append(gateway_id)
    if provider_ids is not None:
        if not provider_ids:
            return 0
        where.append(f"r.provider_id IN ({', '.join(['%s'] * len(provider_ids))})")
        params += list(provider_ids)
    lock = " FOR UPDATE OF r SKIP LOCKED" if connection.features.has_select_for_update else ""
    # `m.provider_id <> ''` is true of every match and lets the planner use the messages'
    # partial provider index whatever it believes: with statistics older than a storm of
    # receipts (200k, issue 10's receipts_storm) it took one pending row for all and scanned
    # every message for each receipt, for minutes per call.
    sql = (f"SELECT r.id, m.id, r.status, r.occurred_at, r.code, r.detail FROM {receipts} r "
           f"JOIN {messages} m ON m.gateway_id = r.gateway_id AND m.provider_id = r.provider_id "
           f"AND m.provider_id <> '' "
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
        _receipts_mark_applied(ids=[row[0] for row in rows], at=timezone.now())
    return len(rows)


def _receipts_mark_applied(*, ids: list[int], at: datetime) -> None:
    if connection.vendor != "postgresql":
        ProviderReceipt.objects.filter(pk__in=ids).update(applied_at=at)
        return
    table = connection.ops.quote_name(ProviderReceipt._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET applied_at = %s WHERE id = ANY(%s::bigint[])",
                       [at, ids])


RECEIPTS_PER_PRUNE = 10_000


def receipts_prune(*, now: datetime | None = None, retention: timedelta | None = None) -> int:
    """Delete stored receipts that never matched a message and were received longer ago than
    `retention` (ENGAGE_RECEIPT_RETENTION_DAYS, 30 by default); returns how many.

    What never matches: the receipts of a long SMS's other parts (a message is matched on its
    last part's id), and receipts for messages Engage did not send. Deleted in chunks of
    RECEIPTS_PER_PRUNE, each in its own short transaction, skipping any a worker is applying.
    """
    if retention is None:
        retention = timedelta(days=settings.ENGAGE_RECEIPT_RETENTION_DAYS)
    cutoff = (now or timezone.now()) - retention
    table = connection.ops.quote_name(ProviderReceipt._meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update else ""
    pruned = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                f"WHERE applied_at IS NULL AND received_at < %s LIMIT %s{lock})",
                [cutoff, RECEIPTS_PER_PRUNE])
            deleted = cursor.rowcount
        pruned += deleted
        if deleted < RECEIPTS_PER_PRUNE:
            return pruned


def _aware(moment: datetime) -> datetime:
    # SQLite (the demo) hands raw queries' times back naive, in UTC as stored.
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)
