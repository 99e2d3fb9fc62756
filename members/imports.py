"""CSV import of members with their consents: every row validated, the writes set-based.

The columns (a header row, UTF-8, comma separated): `external_id` (required); the profile
fields of `PROFILE_FIELDS` but `status` and `custom_attributes`; `attr.<key>` per declared
custom attribute (an empty cell removes it); `consent.<channel>` (granted / withdrawn, yes / no,
true / false, 1 / 0; empty leaves the consent as it is); `consent_text` and `consented_at`, the
wording shown and when the row's consents were given (the import time when absent).

The file is read in blocks of whole records (~1 MB), never whole. Each block is parsed and
cleaned with `member_fields_clean`, in forked worker processes when the file is big (the checks
cost ~60 µs a row, the phone number most of it), then, in the import's one transaction, COPYed
(executemany on SQLite) into a TEMP staging table, upserted with one INSERT ... SELECT ... ON
CONFLICT, and its consent cells that change something written to the ledger and the current
consents. While the database writes one block the workers clean the next ones. A bad row stops
the writing but not the checking, so the report names every bad row, and the transaction is
rolled back: nothing is imported unless bad rows may be skipped.

Imported consent events carry the file's evidence (source "import", `consent_text`, the time).
An imported email grant sends no double opt-in confirmation, as `consent_record` would: a
million-row import would mail every member at once. With double opt-in on, an imported address
stays unmarketable until its member confirms it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, NamedTuple

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from members.models import (
    AuditEntry,
    Channel,
    ConsentEvent,
    ConsentSource,
    CustomAttribute,
    Member,
    Purpose,
)
from members.services.audit import audit_record
from members.services.profiles import (
    PROFILE_FIELDS,
    _parse_moment,
    custom_attributes_declared,
    member_fields_clean,
)

IMPORT_PROFILE_FIELDS = tuple(f for f in PROFILE_FIELDS if f not in ("status", "custom_attributes"))
ATTRIBUTE_PREFIX = "attr."
CONSENT_PREFIX = "consent."
GRANT, WITHDRAW = ConsentEvent.Action.GRANT.value, ConsentEvent.Action.WITHDRAW.value
CONSENT_ACTIONS = {
    "granted": GRANT, "yes": GRANT, "true": GRANT, "1": GRANT,
    "withdrawn": WITHDRAW, "no": WITHDRAW, "false": WITHDRAW, "0": WITHDRAW,
}
EXTERNAL_ID_MAX = Member._meta.get_field("external_id").max_length
NOT_IMPORTED = {
    "status": "the status is not imported: block a member, or erase one, in the admin or the API",
    "custom_attributes": "use one attr.<key> column per custom attribute",
}

BLOCK_BYTES = 1 << 20  # ~8,500 rows: the unit a worker cleans and the database writes
WORKERS_MAX = 4
IN_FLIGHT_PER_WORKER = 4  # blocks cleaned ahead while the database writes one
# A record still open after this much text has an unbalanced quote, not a long field: cut at
# the next line end rather than hold the rest of the file.
OPEN_RECORD_MAX = 8 * BLOCK_BYTES
# Temp tables of one block: its cleaned rows, the members written, the consent changes.
STAGE, WRITTEN, CONSENT_STAGE = ("engage_import_stage", "engage_import_written",
                                 "engage_import_consents")
ERASED_REASON = "this member was erased and cannot be changed"


class BadRow(NamedTuple):
    line: int  # in the file, the header being line 1
    column: str
    reason: str


@dataclass
class ImportReport:
    """What an import did, or in a dry run would do. Nothing is written when `imported` is
    False: a dry run, a header error, or bad rows without `skip_bad_rows`."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0  # bad rows left out under skip_bad_rows
    consent_events: int = 0
    dry_run: bool = False
    imported: bool = False
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len({row.line for row in self.bad_rows})

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bad_rows"] = [row._asdict() for row in self.bad_rows]
        return data

    def summary(self) -> str:
        verb = "would create" if self.dry_run else "created"
        head = ("Dry run" if self.dry_run else "Imported" if self.imported
                else "Nothing imported")
        return (f"{head}: {self.rows} rows, {verb} {self.created}, "
                f"{'would update' if self.dry_run else 'updated'} {self.updated}, "
                f"{self.bad_lines} bad rows{' skipped' if self.skipped else ''}, "
                f"{self.consent_events} consent events ({self.seconds:.1f} s, "
                f"{self.rows_per_second:,.0f} rows/s)")


# --- the header -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """Where each known column sits in the file's rows."""

    columns: tuple[str, ...]
    external_id: int
    profile: tuple[tuple[str, int], ...]
    attributes: tuple[tuple[str, int], ...]
    consents: tuple[tuple[str, int], ...]
    consent_text: int | None
    consented_at: int | None

    def position(self, column: str) -> int:
        return self.columns.index(column) if column in self.columns else len(self.columns)


def _layout(header: list[str], declared: Mapping[str, CustomAttribute]) -> tuple[
        _Layout | None, list[BadRow]]:
    columns = tuple(name.strip() for name in header)
    errors: list[BadRow] = []
    profile, attributes, consents = [], [], []
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if name in seen:
            errors.append(BadRow(1, name, "appears twice in the header"))
        seen.add(name)
        if name in IMPORT_PROFILE_FIELDS:
            profile.append((name, index))
        elif name.startswith(ATTRIBUTE_PREFIX):
            key = name.removeprefix(ATTRIBUTE_PREFIX)
            if key in declared:
                attributes.append((key, index))
            else:
                errors.append(BadRow(1, name, "unknown custom attribute; declared: "
                                              f"{', '.join(sorted(declared)) or 'none'}"))
        elif name.startswith(CONSENT_PREFIX):
            channel = name.removeprefix(CONSENT_PREFIX)
            if channel in Channel.values:
                consents.append((channel, index))
            else:
                errors.append(BadRow(1, name, f"unknown channel; use one of "
                                              f"{', '.join(Channel.values)}"))
        elif name in NOT_IMPORTED:
            errors.append(BadRow(1, name, NOT_IMPORTED[name]))
        elif name not in ("external_id", "consent_text", "consented_at"):
            errors.append(BadRow(1, name or f"#{index + 1}", "unknown column; expected "
                                 "external_id, profile fields, attr.<key> or consent.<channel>"))
    if "external_id" not in seen:
        errors.append(BadRow(1, "external_id", "the header has no external_id column"))
    if ("latitude" in seen) != ("longitude" in seen):
        errors.append(BadRow(1, "latitude" if "latitude" in seen else "longitude",
                             "latitude and longitude go together"))
    if errors:
        return None, errors
    return _Layout(
        columns=columns, external_id=columns.index("external_id"), profile=tuple(profile),
        attributes=tuple(attributes), consents=tuple(consents),
        consent_text=columns.index("consent_text") if "consent_text" in seen else None,
        consented_at=columns.index("consented_at") if "consented_at" in seen else None,
    ), []


# --- cleaning rows (inline or in a worker process) ------------------------------------------

_Encoder = Callable[[list[tuple[Any, ...]], bool], Any]  # (rows, plain) -> the stage's payload


class _Chunk(NamedTuple):
    rows: int
    staged: int  # valid rows, in the payload
    payload: Any  # as the stage loads them: COPY text or a list of tuples
    bad: list[BadRow]
    ids: list[tuple[int, str]]  # (line, external id) of every row with one, valid or not


class _Cleaner:
    """Turns a block of CSV text into staging rows and bad rows; runs in worker processes."""

    def __init__(self, layout: _Layout, declared: Mapping[str, CustomAttribute],
                 now: dt.datetime, encode: _Encoder) -> None:
        self.layout, self.declared, self.now, self.encode = layout, declared, now, encode

    def chunk(self, first_line: int, text: str) -> _Chunk:
        reader = csv.reader(io.StringIO(text, newline=""))
        rows: list[tuple[Any, ...]] = []
        bad: list[BadRow] = []
        ids: list[tuple[int, str]] = []
        count, line_num = 0, 0
        # No value holds a character COPY escapes unless the text has one or a record spans
        # lines: then values go out as they are.
        plain = "\\" not in text and "\t" not in text
        while True:
            line = first_line + line_num
            try:
                row = next(reader, None)
            except csv.Error as exc:
                count += 1
                bad.append(BadRow(line, "", f"not readable as CSV: {exc}"))
                line_num = reader.line_num
                continue
            plain = plain and reader.line_num - line_num <= 1
            line_num = reader.line_num
            if row is None:
                break
            if row:  # a blank line is not a row
                count += 1
                self._row(line, row, rows, bad, ids)
        return _Chunk(count, len(rows), self.encode(rows, plain), bad, ids)

    def _row(self, line: int, row: list[str], rows: list[tuple[Any, ...]],
             bad: list[BadRow], ids: list[tuple[int, str]]) -> None:
        layout = self.layout
        width = len(layout.columns)
        if len(row) != width:
            column = layout.columns[len(row)] if len(row) < width else f"#{width + 1}"
            bad.append(BadRow(line, column, f"the row has {len(row)} fields, the header {width}"))
            return
        errors: list[tuple[str, str]] = []
        external_id = row[layout.external_id].strip()
        if not external_id:
            errors.append(("external_id", "is required"))
        elif len(external_id) > EXTERNAL_ID_MAX:
            errors.append(("external_id", f"at most {EXTERNAL_ID_MAX} characters"))
        else:
            ids.append((line, external_id))
        data: dict[str, Any] = {name: row[index] for name, index in layout.profile}
        if layout.attributes:
            data["custom_attributes"] = {key: row[index] for key, index in layout.attributes}
        cleaned: dict[str, Any] = {}
        try:
            cleaned = member_fields_clean(data, declared=self.declared)
        except ValidationError as exc:
            for key, texts in exc.message_dict.items():
                column = key.replace("custom_attributes.", ATTRIBUTE_PREFIX, 1)
                errors.append((column, "; ".join(texts)))
        actions = []
        for channel, index in layout.consents:
            value = row[index].strip().lower()
            action = CONSENT_ACTIONS.get(value) if value else None
            if value and action is None:
                errors.append((CONSENT_PREFIX + channel,
                               f"{row[index]!r} is not a consent; use granted or withdrawn "
                               "(yes/no, true/false, 1/0), or leave it empty"))
            actions.append(action)
        consented_at = None
        if layout.consented_at is not None and (text := row[layout.consented_at].strip()):
            try:
                consented_at = _parse_moment(text)
                if consented_at > self.now + dt.timedelta(minutes=5):
                    raise ValueError("is in the future")
            except ValueError as exc:
                errors.append(("consented_at", str(exc)))
        if errors:
            errors.sort(key=lambda error: layout.position(error[0]))
            bad.extend(BadRow(line, column, reason) for column, reason in errors)
            return
        values: list[Any] = [line, external_id, True]
        values.extend(cleaned[name] for name, _ in layout.profile)
        if layout.attributes:
            values.append(cleaned["custom_attributes"])
        values.extend(actions)
        if layout.consent_text is not None:
            values.append(row[layout.consent_text].strip())
        if layout.consented_at is not None:
            values.append(consented_at)
        rows.append(tuple(values))


_worker_cleaner: _Cleaner | None = None


def _worker_start(cleaner: _Cleaner) -> None:
    global _worker_cleaner
    _worker_cleaner = cleaner


def _worker_chunk(first_line: int, text: str) -> _Chunk:
    assert _worker_cleaner is not None
    return _worker_cleaner.chunk(first_line, text)


def import_workers() -> int:
    """How many worker processes clean a big file here (0: the import process cleans it)."""
    return min(WORKERS_MAX, multiprocessing.cpu_count()) if _workers_allowed() else 0


def _workers_allowed() -> bool:
    # Forking copies the open database connection, which the children never touch, and every
    # lock of every thread: only a single-threaded, non-daemon process (a command, a sync web
    # worker) forks. A Celery prefork child is a daemon and may not have children.
    return ("fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
            and not multiprocessing.current_process().daemon
            and (multiprocessing.cpu_count() or 1) > 1)


# --- reading the file -----------------------------------------------------------------------

def _lines_in(text: str) -> int:
    # As io.StringIO(newline="") splits them, which is how the csv reader counts.
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class _Blocks:
    """The file as blocks of whole records, decoded, each with the line it starts on."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.carry = ""
        self.line = 1
        self.done = False

    def _read(self) -> tuple[str, bool]:
        raw = self.source.read(BLOCK_BYTES)
        try:
            return self.decoder.decode(raw, final=not raw), not raw
        except UnicodeDecodeError as exc:
            good = self.decoder.decode(raw[:exc.start]) if exc.start else ""
            line = self.line + _lines_in(self.carry + good)
            raise _FileError(BadRow(line, "", "the file is not UTF-8 text")) from exc

    def header(self) -> list[str] | None:
        text = self.carry
        while not (end := _first_record_end(text)) and not self.done:
            more, self.done = self._read()
            text += more
        end = end or len(text)
        self.carry = text[end:]
        self.line += _lines_in(text[:end])
        return next(csv.reader(io.StringIO(text[:end], newline="")), None)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        while not self.done or self.carry:
            text = self.carry
            if not self.done:
                more, self.done = self._read()
                text += more
            end = len(text) if self.done else _record_end(text)
            if not end and len(text) > OPEN_RECORD_MAX:
                end = text.rfind("\n") + 1
            self.carry = text[end:]
            if end:
                first, self.line = self.line, self.line + _lines_in(text[:end])
                yield first, text[:end]


def _first_record_end(text: str) -> int:
    end = text.find("\n") + 1
    while end and text.count('"', 0, end) % 2:
        end = text.find("\n", end) + 1
    return end


def _record_end(text: str) -> int:
    """Just past the last line end that closes a record (an even number of quotes before it)."""
    end = text.rfind("\n") + 1
    while end and text.count('"', 0, end) % 2:
        end = text.rfind("\n", 0, end - 1) + 1
    return end


class _FileError(Exception):
    def __init__(self, bad_row: BadRow) -> None:
        super().__init__(bad_row.reason)
        self.bad_row = bad_row


# --- the staging table ----------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_KINDS = {"CharField": "text", "EmailField": "text", "DateField": "date",
          "DateTimeField": "moment", "FloatField": "float"}


def _stage_columns(layout: _Layout) -> list[tuple[str, str]]:
    """(column, kind) of the staging table, in the order of a cleaned row."""
    columns = [("line", "int"), ("external_id", "text"), ("valid", "bool")]
    columns += [(name, _KINDS[Member._meta.get_field(name).get_internal_type()])
                for name, _ in layout.profile]
    if layout.attributes:
        columns.append(("attrs", "json"))
    columns += [(f"consent_{channel}", "text") for channel, _ in layout.consents]
    if layout.consent_text is not None:
        columns.append(("consent_text", "text"))
    if layout.consented_at is not None:
        columns.append(("consented_at", "moment"))
    return columns


class _Stage:
    """The staging table of one block where COPY is not available (SQLite: the embedded demo)."""

    types = {"int": "integer", "text": "text", "bool": "boolean", "date": "date",
             "moment": "datetime", "float": "real", "json": "text"}
    # json_patch removes the keys whose new value is null: an empty cell removes an attribute.
    attributes_merge = "json_patch(COALESCE({current}, '{{}}'), s.attrs)"
    create_suffix = ""
    fence = " LIMIT -1 OFFSET 0"  # a subquery the planner computes once, not inlined

    def __init__(self, layout: _Layout) -> None:
        self.columns = _stage_columns(layout)

    def reset(self, cursor: Any) -> None:
        """Empty temp tables for the next block. Dropped and created rather than truncated:
        under a large import's write load a TRUNCATE waited ~0.1 s on the file system."""
        moment = self.types["moment"]
        tables = {
            STAGE: ", ".join(f"{name} {self.types[kind]}" for name, kind in self.columns),
            WRITTEN: "id bigint, external_id text, created boolean",
            CONSENT_STAGE: f"member_id bigint, fresh boolean, channel text, action text, "
                           f"recorded_at {moment}, consent_text text",
        }
        for table, columns in tables.items():
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TEMP TABLE {table} ({columns}){self.create_suffix}")

    def drop(self, cursor: Any) -> None:
        for table in (STAGE, WRITTEN, CONSENT_STAGE):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def members_write(self, cursor: Any, upsert: str, params: list[Any],
                      now: dt.datetime) -> None:
        """Run the members upsert, keeping (id, external id, created) of each written row."""
        cursor.execute(f"{upsert} RETURNING id, external_id, created_at = %s AS created",
                       [*params, now])
        cursor.executemany(f"INSERT INTO {WRITTEN} (id, external_id, created) "
                           f"VALUES (%s, %s, %s)", cursor.fetchall())

    def encoder(self) -> _Encoder:
        ops = connection.ops
        adapt = {"date": lambda v: None if v is None else v.isoformat(),
                 "moment": ops.adapt_datetimefield_value,
                 "json": lambda v: None if v is None else json.dumps(v)}
        kinds = [adapt.get(kind) for _, kind in self.columns]
        return lambda rows, plain: [
            tuple(v if a is None else a(v) for a, v in zip(kinds, row, strict=True))
            for row in rows
        ]

    def load(self, cursor: Any, payload: Any) -> None:
        self.reset(cursor)
        names = ", ".join(name for name, _ in self.columns)
        cursor.executemany(f"INSERT INTO {STAGE} ({names}) "
                           f"VALUES ({', '.join(['%s'] * len(self.columns))})", payload)


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


# COPY's text form of each type a cleaned row holds (exact classes: bool is not int here).
_COPY_FORMATS: dict[type, Callable[[Any], str]] = {
    str: _copy_text, bool: lambda v: "t" if v else "f", int: str, float: repr,
    dt.date: dt.date.isoformat, dt.datetime: dt.datetime.isoformat,
    dict: lambda v: _copy_text(json.dumps(v)),
}


def _copy_payload(rows: list[tuple[Any, ...]], plain: bool) -> bytes:
    formats = _COPY_FORMATS
    return "".join([
        "\t".join([
            (v if plain else _copy_text(v)) if v.__class__ is str
            else "\\N" if v is None else formats[v.__class__](v)
            for v in row
        ]) + "\n"
        for row in rows
    ]).encode()


class _PostgresStage(_Stage):
    """PostgreSQL: COPY in text format, which the workers write, so the import process only
    forwards bytes."""

    types = {"int": "integer", "text": "text", "bool": "boolean", "date": "date",
             "moment": "timestamptz", "float": "double precision", "json": "jsonb"}
    attributes_merge = "jsonb_strip_nulls(COALESCE({current}, '{{}}'::jsonb) || s.attrs)"
    create_suffix = " ON COMMIT DROP"
    fence = " OFFSET 0"

    def encoder(self) -> _Encoder:
        return _copy_payload

    def members_write(self, cursor: Any, upsert: str, params: list[Any],
                      now: dt.datetime) -> None:
        cursor.execute(f"WITH written AS ({upsert} RETURNING id, external_id, "
                       f"created_at = %s AS created) INSERT INTO {WRITTEN} "
                       f"SELECT id, external_id, created FROM written", [*params, now])

    def load(self, cursor: Any, payload: Any) -> None:
        self.reset(cursor)
        names = ", ".join(name for name, _ in self.columns)
        with connection.connection.cursor() as raw, raw.copy(
                f"COPY {STAGE} ({names}) FROM STDIN") as copy:
            copy.write(payload)


def _cleaned(blocks: _Blocks, cleaner: _Cleaner) -> Iterator[_Chunk]:
    """Each block cleaned, in file order: inline for a small file, else by worker processes,
    with a bounded number of blocks in flight so memory stays flat. While the import process
    writes one block, the workers clean the next ones."""
    chunks = iter(blocks)
    first = next(chunks, None)
    second = next(chunks, None) if first else None
    workers = import_workers()
    if second is None or not workers:
        for block in (first, second):
            if block:
                yield cleaner.chunk(*block)
        for block in chunks:
            yield cleaner.chunk(*block)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_start, initargs=(cleaner,))
    pending: deque[Future[_Chunk]] = deque()
    try:
        for block in (first, second):
            pending.append(pool.submit(_worker_chunk, *block))
        for block in chunks:
            pending.append(pool.submit(_worker_chunk, *block))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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

    def __init__(self, cursor: Any, layout: _Layout, stage: _Stage, now: dt.datetime,
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

    def block(self, chunk: _Chunk) -> None:
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


def _members_upsert(layout: _Layout, stage: _Stage, now: dt.datetime) -> tuple[
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


def _consent_changes(layout: _Layout, stage: _Stage, now: dt.datetime, *,
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

    The consent tables' foreign keys are checked per statement, not all at commit (they are
    deferred, Django's default): the 2.6M member checks at the commit of a 1M-row import took
    25 s after the last block; per statement they run while the workers clean the next
    blocks. And no JIT: compiling a statement took longer than running it.
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
    except _FileError as exc:
        report.bad_rows.append(exc.bad_row)
        report.imported = False
    except _Abandon:
        pass
    report.bad_rows.sort(key=lambda row: row.line)  # stable: a row's columns stay in order
    report.seconds = time.monotonic() - started
    return report


def _import(source: BinaryIO, report: ImportReport, *, skip_bad_rows: bool,
            by: AbstractBaseUser | None) -> None:
    blocks = _Blocks(source)
    declared = custom_attributes_declared()
    header = blocks.header()
    if not header:
        raise _FileError(BadRow(1, "", "the file is empty; the first line must be the header"))
    layout, errors = _layout(header, declared)
    if layout is None:
        report.bad_rows = errors
        return
    now = timezone.now()
    stage = _PostgresStage(layout) if connection.vendor == "postgresql" else _Stage(layout)
    cleaner = _Cleaner(layout, declared, now, stage.encoder())
    with transaction.atomic(), connection.cursor() as cursor:
        writes = _Import(cursor, layout, stage, now, by, report, skip_bad_rows=skip_bad_rows)
        settings = _block_settings(cursor)
        # closing(): the worker processes stop on an error too
        with settings, closing(_cleaned(blocks, cleaner)) as chunks:
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
