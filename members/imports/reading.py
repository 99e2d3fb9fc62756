"""Reading the file in blocks of whole records and cleaning them, inline or in worker processes."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, BinaryIO, NamedTuple

from django.core.exceptions import ValidationError

from members.imports.layout import (
    ATTRIBUTE_PREFIX,
    CONSENT_ACTIONS,
    CONSENT_PREFIX,
    EXTERNAL_ID_MAX,
    BadRow,
    Layout,
)
from members.models import CustomAttribute
from members.services.profiles import (
    FIELD_CLEANERS,
    custom_attribute_clean,
    location_incomplete,
    moment_parse,
    phone_clean,
)

BLOCK_BYTES = 1 << 20  # ~4,000 rows: the unit a worker cleans and the database writes
WORKERS_MAX = 4
IN_FLIGHT_PER_WORKER = 4  # blocks cleaned ahead while the database writes one
# A record still open after this much text has an unbalanced quote, not a long field: cut at
# the next line end rather than hold the rest of the file.
OPEN_RECORD_MAX = 8 * BLOCK_BYTES


# --- cleaning rows (inline or in a worker process) ------------------------------------------

Encoder = Callable[[list[tuple[Any, ...]], bool], Any]  # (rows, plain) -> the stage's payload


class Chunk(NamedTuple):
    rows: int
    staged: int  # valid rows, in the payload
    payload: Any  # as the stage loads them: COPY text or a list of tuples
    bad: list[BadRow]
    ids: list[tuple[int, str]]  # (line, external id) of every row with one, valid or not


_BAD = object()  # in place of a value that did not pass its rule


class Cleaner:
    """Turns a block of CSV text into staging rows and bad rows; runs in worker processes.

    The rules are `member_fields_clean`'s own (`FIELD_CLEANERS`, `phone_clean`,
    `custom_attribute_clean`, `location_incomplete`), looked up once per column rather than
    once per cell: the same values pass, with the same reasons for those that do not.
    """

    def __init__(self, layout: Layout, declared: Mapping[str, CustomAttribute],
                 now: dt.datetime, encode: Encoder) -> None:
        self.layout, self.declared, self.now, self.encode = layout, declared, now, encode
        columns = layout.columns
        self.width = len(columns)
        self.positions = {column: position for position, column in enumerate(columns)}
        # (index in the row, column, rule; None for the phone, whose rule takes the country)
        self.profile = tuple((index, name, None if name == "phone" else FIELD_CLEANERS[name])
                             for name, index in layout.profile)
        names = [name for name, _ in layout.profile]
        self.country = dict(layout.profile).get("country")
        # Where the coordinates sit in a cleaned row: after its line, external id and valid.
        self.location = ((names.index("latitude") + 3, names.index("longitude") + 3)
                         if "latitude" in names and "longitude" in names else None)
        self.attributes = tuple((index, ATTRIBUTE_PREFIX + key, key, declared[key])
                                for key, index in layout.attributes)
        self.consents = tuple((index, CONSENT_PREFIX + channel)
                              for channel, index in layout.consents)
        self.latest = now + dt.timedelta(minutes=5)  # a consent given later is in the future

    def chunk(self, first_line: int, text: str) -> Chunk:
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
        return Chunk(count, len(rows), self.encode(rows, plain), bad, ids)

    def _row(self, line: int, row: list[str], rows: list[tuple[Any, ...]],
             bad: list[BadRow], ids: list[tuple[int, str]]) -> None:
        width = self.width
        if len(row) != width:
            column = self.layout.columns[len(row)] if len(row) < width else f"#{width + 1}"
            bad.append(BadRow(line, column, f"the row has {len(row)} fields, the header {width}"))
            return
        errors: list[tuple[str, str]] = []
        external_id = row[self.layout.external_id].strip()
        if not external_id:
            errors.append(("external_id", "is required"))
        elif len(external_id) > EXTERNAL_ID_MAX:
            errors.append(("external_id", f"at most {EXTERNAL_ID_MAX} characters"))
        else:
            ids.append((line, external_id))
        values: list[Any] = [line, external_id, True]
        append = values.append
        for index, column, rule in self.profile:
            try:
                if rule is None:
                    region = row[self.country] or None if self.country is not None else None
                    append(phone_clean(row[index], region=region))
                else:
                    append(rule(row[index]))
            except ValidationError as exc:
                append(_BAD)
                errors.extend((key, "; ".join(texts)) for key, texts in exc.message_dict.items())
            except ValueError as exc:
                append(_BAD)
                errors.append((column, str(exc)))
        if self.location is not None:
            cleaned = {name: values[slot] for name, slot in zip(
                ("latitude", "longitude"), self.location, strict=True) if values[slot] is not _BAD}
            if location_incomplete(cleaned) and "latitude" in cleaned:
                errors.append(("latitude", "latitude and longitude go together"))
        if self.attributes:
            attributes: dict[str, Any] = {}
            for index, column, key, attribute in self.attributes:
                try:
                    attributes[key] = custom_attribute_clean(attribute, row[index])
                except ValueError as exc:
                    errors.append((column, str(exc)))
            append(attributes)
        for index, column in self.consents:
            cell = row[index]
            value = cell.strip().lower()
            action = CONSENT_ACTIONS.get(value) if value else None
            if value and action is None:
                errors.append((column, f"{cell!r} is not a consent; use granted or withdrawn "
                                       "(yes/no, true/false, 1/0), or leave it empty"))
            append(action)
        if self.layout.consent_text is not None:
            append(row[self.layout.consent_text].strip())
        if self.layout.consented_at is not None:
            consented_at = None
            if text := row[self.layout.consented_at].strip():
                try:
                    consented_at = moment_parse(text)
                    if consented_at > self.latest:
                        raise ValueError("is in the future")
                except ValueError as exc:
                    errors.append(("consented_at", str(exc)))
            append(consented_at)
        if errors:
            positions = self.positions
            errors.sort(key=lambda error: positions.get(error[0], width))
            bad.extend(BadRow(line, column, reason) for column, reason in errors)
            return
        rows.append(tuple(values))


_worker_cleaner: Cleaner | None = None


def _worker_start(cleaner: Cleaner) -> None:
    global _worker_cleaner
    _worker_cleaner = cleaner


def _worker_chunk(first_line: int, text: str) -> Chunk:
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


class Blocks:
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
            raise FileError(BadRow(line, "", "the file is not UTF-8 text")) from exc

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


class FileError(Exception):
    def __init__(self, bad_row: BadRow) -> None:
        super().__init__(bad_row.reason)
        self.bad_row = bad_row


def chunks_cleaned(blocks: Blocks, cleaner: Cleaner) -> Iterator[Chunk]:
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
    pending: deque[Future[Chunk]] = deque()
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
