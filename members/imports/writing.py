"""The set-based writes of each block, inside the import's one transaction, and the service."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any, BinaryIO

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from members import hooks
from members.imports.layout import ERASED_REASON, GRANT, BadRow, ImportReport, Layout, layout_read
from members.imports.reading import Blocks, Chunk, Cleaner, FileError, chunks_cleaned
from members.imports.staging import CONSENT_STAGE, STAGE, WRITTEN, PostgresStage, Stage
from members.models import (
    AuditEntry,
    ConsentEvent,
    ConsentSource,
    Member,
    Purpose,
)
from members.services.audit import audit_record
from members.services.profiles import custom_attributes_declared

# --- the set-based steps, block by block ----------------------------------------------------

MEMBERS = Member._meta.db_table
CONSENTS = "members_consent"
EVENTS = ConsentEvent._meta.db_table
ERASED = Member.Status.ERASED.value
MARKETING = Purpose.MARKETING.value
IMPORT = ConsentSource.IMPORT.value


class _Import:
    """The writes of one import inside its transaction, fed one cleaned block at a time.

    A block is staged, upserted and its consents written, unless the import is a dry run or
    already has a bad row it may not skip: then blocks are only checked against the database
    (an erased member) and counted, so the report still lists every bad row.
    """

    def __init__(self, cursor: Any, layout: Layout, stage: Stage, now: dt.datetime,
                 by: AbstractBaseUser | None, report: ImportReport, *,
                 skip_bad_rows: bool) -> None:
        self.cursor, self.layout, self.stage, self.now = cursor, layout, stage, now
        self.actor = by.pk if by is not None and by.is_authenticated else None
        self.report, self.skip_bad_rows = report, skip_bad_rows
        # The first line of each external id: the one row of it that counts.
        self.first_lines: dict[str, int] = {}
        self.members_sql, self.members_params = _members_upsert(layout, stage, now)

    @property
    def writing(self) -> bool:
        report = self.report
        return not report.dry_run and (self.skip_bad_rows or not report.bad_rows)

    def block(self, chunk: Chunk) -> None:
        report = self.report
        report.rows += chunk.rows
        report.bad_rows += chunk.bad
        first_lines = self.first_lines
        repeated = [
            BadRow(line, "external_id", f"the same external id as line {first}")
            for line, external_id in chunk.ids
            if (first := first_lines.setdefault(external_id, line)) != line
        ]
        report.bad_rows += repeated
        self.stage.load(self.cursor, chunk.payload)
        staged = chunk.staged - self._exclude([row.line for row in repeated])
        if self.writing:
            self._write(staged)
        else:
            self._check()

    def _exclude(self, lines: list[int]) -> int:
        """Leave these staged lines out; returns how many were staged."""
        if not lines:
            return 0
        self.cursor.execute(f"UPDATE {STAGE} SET valid = %s WHERE line IN "
                            f"({', '.join(['%s'] * len(lines))})", [False, *lines])
        return self.cursor.rowcount

    def _erased(self, lines: list[int]) -> None:
        self.report.bad_rows += [BadRow(line, "external_id", ERASED_REASON) for line in lines]

    def _write(self, staged: int) -> None:
        report, cursor = self.report, self.cursor
        self.stage.members_write(cursor, self.members_sql, self.members_params, self.now)
        cursor.execute(f"SELECT COUNT(*), COUNT(CASE WHEN created THEN 1 END) FROM {WRITTEN}")
        written, created = cursor.fetchone()
        if written < staged:  # the upsert leaves erased members alone
            cursor.execute(f"SELECT s.line FROM {STAGE} s WHERE s.valid AND NOT EXISTS "
                           f"(SELECT 1 FROM {WRITTEN} w WHERE w.external_id = s.external_id)")
            self._erased([line for (line,) in cursor.fetchall()])
        report.created += created
        report.updated += written - created
        if self.layout.consents:
            report.consent_events += self._consents_write()

    def _check(self) -> None:
        report, cursor = self.report, self.cursor
        cursor.execute(
            f"SELECT COUNT(*), COUNT(status), COUNT(CASE WHEN status = %s THEN 1 END) "
            f"FROM (SELECT {_member_of('status')} AS status FROM {STAGE} s WHERE s.valid) x",
            [ERASED])
        staged, existing, erased = cursor.fetchone()
        if erased:
            cursor.execute(f"SELECT s.line FROM {STAGE} s WHERE s.valid AND "
                           f"{_member_of('status')} = %s", [ERASED])
            lines = [line for (line,) in cursor.fetchall()]
            self._erased(lines)
            self._exclude(lines)
        report.created += staged - existing
        report.updated += existing - erased
        if report.dry_run and self.layout.consents:
            sql, params = _consent_changes(self.layout, self.stage, self.now, written=False)
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) changes", params)
            report.consent_events += cursor.fetchone()[0]

    def _consents_write(self) -> int:
        """Append the changing consent events (source import) and bring the current consents
        up to date, never over a newer decision. Returns the events written."""
        cursor = self.cursor
        changes, params = _consent_changes(self.layout, self.stage, self.now, written=True)
        cursor.execute(f"INSERT INTO {CONSENT_STAGE} (member_id, fresh, channel, action, "
                       f"recorded_at, consent_text) {changes}", params)
        cursor.execute(
            f"INSERT INTO {EVENTS} (member_id, channel, purpose, action, source, recorded_at, "
            f"consent_text, actor_id) SELECT member_id, channel, %s, action, %s, recorded_at, "
            f"consent_text, %s FROM {CONSENT_STAGE}", [MARKETING, IMPORT, self.actor])
        events = cursor.rowcount
        current = (f"INSERT INTO {CONSENTS} (member_id, channel, purpose, state, source, "
                   f"recorded_at) SELECT member_id, channel, %s, CASE action WHEN %s THEN %s "
                   f"ELSE %s END, %s, recorded_at FROM {CONSENT_STAGE}")
        params = [MARKETING, GRANT, "granted", "withdrawn", IMPORT]
        # A member created by this import has no consent anyone else could have written yet.
        cursor.execute(f"{current} WHERE fresh", params)
        cursor.execute(
            f"{current} WHERE NOT fresh ON CONFLICT (member_id, channel, purpose) "
            f"WHERE category_id IS NULL DO UPDATE SET state = EXCLUDED.state, "
            f"source = EXCLUDED.source, recorded_at = EXCLUDED.recorded_at "
            f"WHERE {CONSENTS}.recorded_at <= EXCLUDED.recorded_at", params)
        return events


def _member_of(column: str) -> str:
    """A column of the staged row's member, NULL for a new one.

    A scalar subquery is one index lookup per staged row whatever the statistics say: the
    members table grows inside this transaction, where its statistics cannot follow, and a
    join planned on them may hash the whole table once per block.
    """
    return f"(SELECT m.{column} FROM {MEMBERS} m WHERE m.external_id = s.external_id)"


def _members_upsert(layout: Layout, stage: Stage, now: dt.datetime) -> tuple[
        str, list[Any]]:
    """One upsert of the staged block; only the file's columns change on existing members."""
    names = [name for name, _ in layout.profile]
    # (column, value from the staged row s, params)
    values: list[tuple[str, str, list[Any]]] = [("external_id", "s.external_id", [])]
    values += [(name, f"s.{name}", []) for name in names if name != "registered_at"]
    updates = list(names)
    if "registered_at" in names:
        # An empty cell keeps the member's date; a new member joined now.
        values.append(("registered_at", f"CASE WHEN s.registered_at IS NOT NULL THEN "
                                         f"s.registered_at WHEN {_member_of('id')} IS NULL "
                                         f"THEN %s ELSE {_member_of('registered_at')} END",
                       [now]))
    else:
        values.append(("registered_at", "%s", [now]))  # new members only: not in `updates`
    if layout.attributes:
        values.append(("custom_attributes", stage.attributes_merge.format(
            current=_member_of("custom_attributes")), []))
        updates.append("custom_attributes")
    values += [("created_at", "%s", [now]), ("updated_at", "%s", [now])]
    updates.append("updated_at")
    sets = [f"{name} = EXCLUDED.{name}" for name in updates]
    for address in ("email", "phone"):
        if address in names:
            # A new address has not been confirmed by the member.
            sets.append(f"{address}_verified_at = CASE WHEN {MEMBERS}.{address} = "
                        f"EXCLUDED.{address} THEN {MEMBERS}.{address}_verified_at END")
    sql = (f"INSERT INTO {MEMBERS} ({', '.join(column for column, _, _ in values)}) "
           f"SELECT {', '.join(expression for _, expression, _ in values)} FROM {STAGE} s "
           f"WHERE s.valid ORDER BY s.line "
           f"ON CONFLICT (external_id) DO UPDATE SET {', '.join(sets)} "
           f"WHERE {MEMBERS}.status <> %s")
    return sql, [param for _, _, params in values for param in params] + [ERASED]


def _consent_changes(layout: Layout, stage: Stage, now: dt.datetime, *,
                     written: bool) -> tuple[str, list[Any]]:
    """The staged consent cells that change a member's current marketing consent (or give the
    first one): (member_id, fresh, channel, action, recorded_at, consent_text) rows, `fresh`
    for a member this import created.

    A cell that agrees with the current state adds nothing, so importing a file again records
    no new events; an older decision than the current one is kept in the ledger once but does
    not overturn it. `written`: the block's members are in WRITTEN; otherwise (a dry run) they
    are looked up, and a new member's cells all count. Lookups are scalar subqueries, for the
    reason given at `_member_of`; the fences keep the planner from copying a lookup into every
    expression that uses its result.
    """
    fence = stage.fence
    channels = [channel for channel, _ in layout.consents]
    actions = " ".join(f"WHEN %s THEN s.consent_{channel}" for channel in channels)
    recorded = "COALESCE(s.consented_at, %s)" if layout.consented_at is not None else "%s"
    text = "COALESCE(s.consent_text, '')" if layout.consent_text is not None else "''"
    source, member, fresh = (
        (f"{STAGE} s JOIN {WRITTEN} w ON w.external_id = s.external_id", "w.id", "w.created")
        if written else (f"{STAGE} s", _member_of("id"), "false"))
    current = (f"FROM {CONSENTS} cur WHERE cur.member_id = x.member_id AND cur.channel = "
               f"x.channel AND cur.purpose = %s AND cur.category_id IS NULL")
    sql = (
        f"SELECT member_id, fresh, channel, action, recorded_at, consent_text FROM ("
        f"SELECT x.*, CASE WHEN x.fresh THEN NULL ELSE (SELECT cur.state {current}) END "
        f"AS state, CASE WHEN x.fresh THEN NULL ELSE (SELECT cur.recorded_at {current}) END "
        f"AS state_at FROM ("
        f"SELECT {member} AS member_id, {fresh} AS fresh, c.channel AS channel, "
        f"CASE c.channel {actions} END AS action, {recorded} AS recorded_at, "
        f"{text} AS consent_text FROM {source} "
        f"CROSS JOIN ({' UNION ALL '.join(['SELECT %s AS channel'] * len(channels))}) c "
        f"WHERE s.valid{fence}) x WHERE x.action IS NOT NULL{fence}) y "
        f"WHERE state IS NULL OR (state <> CASE action WHEN %s THEN %s ELSE %s END "
        f"AND (state_at <= recorded_at OR (SELECT 1 FROM {EVENTS} e "
        f"WHERE e.member_id = y.member_id AND e.recorded_at = y.recorded_at "
        f"AND e.channel = y.channel AND e.purpose = %s AND e.category_id IS NULL "
        f"AND e.action = y.action LIMIT 1) IS NULL)) ORDER BY member_id, channel"
    )
    params = [MARKETING, MARKETING, *channels, now, *channels, GRANT, "granted", "withdrawn",
              MARKETING]
    return sql, params


@contextmanager
def _block_settings(cursor: Any) -> Iterator[None]:
    """PostgreSQL settings for the many short statements over staged blocks, restored after.

    The consent tables' remaining foreign keys (category, actor: NULL on nearly every row; the
    member key carries no constraint, see ConsentEvent.member) are checked per statement, not
    all at commit (they are deferred, Django's default), so nothing is left for the commit.
    And no JIT: compiling a statement took longer than running it.
    """
    if connection.vendor != "postgresql":
        yield
        return
    cursor.execute(
        "SELECT string_agg(quote_ident(conname), ', '), current_setting('jit') "
        "FROM pg_constraint WHERE contype = 'f' AND condeferrable "
        "AND conrelid IN (%s::regclass, %s::regclass)", [CONSENTS, EVENTS])
    keys, jit = cursor.fetchone()
    cursor.execute("SET LOCAL jit = off")
    if keys:
        cursor.execute(f"SET CONSTRAINTS {keys} IMMEDIATE")
    yield
    if keys:
        cursor.execute(f"SET CONSTRAINTS {keys} DEFERRED")
    cursor.execute("SELECT set_config('jit', %s, true)", [jit])


# --- the service ----------------------------------------------------------------------------

class _Abandon(Exception):
    """Roll the import's transaction back: a dry run, or bad rows that were not to be skipped."""


def members_import(*, source: BinaryIO, dry_run: bool = False, skip_bad_rows: bool = False,
                   by: AbstractBaseUser | None = None) -> ImportReport:
    """Import members and their consents from a CSV file (see the module docstring).

    `source` is a binary file object, read in blocks. Every row is validated; a bad row names
    its line, column and reason. With any bad row nothing is imported, unless
    `skip_bad_rows`, which imports the others. A dry run validates everything and counts what
    would be created and updated, writing nothing. An unknown column stops the import at the
    header whatever the options.
    """
    started = time.monotonic()
    report = ImportReport(dry_run=dry_run)
    try:
        _import(source, report, skip_bad_rows=skip_bad_rows, by=by)
    except FileError as exc:
        report.bad_rows.append(exc.bad_row)
        report.imported = False
    except _Abandon:
        pass
    report.bad_rows.sort(key=lambda row: row.line)  # stable: a row's columns stay in order
    report.seconds = time.monotonic() - started
    return report


def _import(source: BinaryIO, report: ImportReport, *, skip_bad_rows: bool,
            by: AbstractBaseUser | None) -> None:
    blocks = Blocks(source)
    declared = custom_attributes_declared()
    header = blocks.header()
    if not header:
        raise FileError(BadRow(1, "", "the file is empty; the first line must be the header"))
    layout, errors = layout_read(header, declared)
    if layout is None:
        report.bad_rows = errors
        return
    now = timezone.now()
    stage = PostgresStage(layout) if connection.vendor == "postgresql" else Stage(layout)
    cleaner = Cleaner(layout, declared, now, stage.encoder())
    with transaction.atomic(), connection.cursor() as cursor:
        writes = _Import(cursor, layout, stage, now, by, report, skip_bad_rows=skip_bad_rows)
        settings = _block_settings(cursor)
        # closing(): the worker processes stop on an error too
        with settings, closing(chunks_cleaned(blocks, cleaner)) as chunks:
            for chunk in chunks:
                writes.block(chunk)
        if not writes.writing:
            raise _Abandon
        stage.drop(cursor)
        report.skipped = report.bad_lines
        report.imported = True
        audit_record(action=AuditEntry.Action.MEMBER_IMPORT, actor=by, detail={
            "rows": report.rows, "created": report.created, "updated": report.updated,
            "skipped": report.skipped, "consent_events": report.consent_events,
            "columns": list(layout.columns),
        })
        # Too many members to list: what follows them (watched target groups) looks at all.
        hooks.members_changed(None)
