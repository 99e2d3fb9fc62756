"""Uploaded address lists: the phones or emails a mailing goes to, read and counted.

A list is CSV or plain text: one address a line, or a header row naming a `phone` or `email`
column (comma, semicolon or tab separated, as spreadsheets save it). Phones are read as the
member import reads them (E.164, numbers without a country code in `region`), emails as
member profiles store them (`email_normalize`: validated, lower-cased), so an address in a
list matches the member who has it.

The file is read as a stream and members are looked up once per chunk of new addresses;
only the distinct valid addresses are held.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.db import connection

from members.models import Channel, Member
from members.services.profiles import email_normalize, phone_clean

LIST_BYTES_MAX = 32 * 1024 * 1024  # about 2M phones or 1M emails
LOOKUP_CHUNK = 5_000  # addresses per member query
INVALID_EXAMPLES_MAX = 20  # bad lines shown to the marketer; the count covers them all
_VALUE_SHOWN_MAX = 80

# The member field an address of each channel is compared with; Viber messages go to the
# member's phone number.
ADDRESS_FIELDS = {Channel.SMS: "phone", Channel.VIBER: "phone", Channel.EMAIL: "email"}
_DELIMITERS = (",", ";", "\t")


class AddressListError(ValueError):
    """The file cannot be read as an address list; the message is one line for the user."""


@dataclass(frozen=True)
class InvalidAddress:
    line: int
    value: str
    reason: str


@dataclass(frozen=True)
class AddressListReport:
    """What an uploaded list holds.

    `total` counts the non-blank lines below any header: `total == valid + invalid +
    duplicates`. `valid` counts distinct addresses, known to a member or not; `unknown` is
    the part of them that no member has. `addresses` are the valid ones, normalized, in
    the order of their first line.
    """

    channel: str
    total: int
    valid: int
    unknown: int
    invalid: int
    duplicates: int
    addresses: list[str]
    invalid_examples: list[InvalidAddress]


def address_list_read(*, file: BinaryIO, channel: str,
                      region: str | None = None) -> AddressListReport:
    """Read an uploaded list of the `channel`'s addresses (`sms`/`viber`: phones, `email`).

    `file` is the upload opened in binary; it is read once and left open. `region` is the
    ISO country assumed for phones written without a country code. Raises AddressListError
    when the file is not UTF-8 text, larger than LIST_BYTES_MAX, empty, or has no column of
    the channel's addresses.
    """
    field = ADDRESS_FIELDS.get(channel)
    if field is None:
        raise AddressListError(f"an address list serves {', '.join(ADDRESS_FIELDS)} "
                               f"mailings, not {channel}")
    normalize: Callable[[str], str] = (
        email_normalize if field == "email" else functools.partial(phone_clean, region=region))
    text = io.TextIOWrapper(io.BufferedReader(_Capped(file)), encoding="utf-8-sig",
                            newline="")
    tally = _Tally()
    try:
        rows, column, delimiter = _layout(text, field=field)
        for line, row in rows:
            tally.total += 1
            if column is None:
                values = [cell for cell in row if cell.strip()]
                if len(values) > 1:
                    tally.invalid(line, delimiter.join(row), "more than one value on the line")
                    continue
                value = values[0]
            elif column < len(row) and row[column].strip():
                value = row[column]
            else:
                tally.invalid(line, delimiter.join(row), f"no {field}")
                continue
            try:
                address = normalize(value)
            except ValidationError as exc:
                tally.invalid(line, value.strip(), "; ".join(
                    message for messages in exc.message_dict.values() for message in messages))
                continue
            tally.valid(address, field=field)
    except UnicodeDecodeError as exc:
        raise AddressListError("the file is not UTF-8 text; save it as UTF-8 "
                               "(in Excel: CSV UTF-8)") from exc
    tally.lookup(field=field)
    if not tally.total:
        raise AddressListError(f"the file has a header but no {field} below it")
    return AddressListReport(
        channel=channel, total=tally.total, valid=len(tally.addresses), unknown=tally.unknown,
        invalid=tally.invalid_count, duplicates=tally.duplicates, addresses=tally.addresses,
        invalid_examples=tally.examples)


def _layout(text: io.TextIOWrapper, *,
            field: str) -> tuple[Iterator[tuple[int, list[str]]], int | None, str]:
    """The data rows, the index of the address column (None: one address a line, no
    header) and the delimiter, told from the first non-blank line."""
    head: list[str] = []
    for line in text:
        head.append(line)
        if line.strip():
            break
    else:
        raise AddressListError("the file is empty")
    delimiter = max(_DELIMITERS, key=head[-1].count)  # "," when the line has none
    rows = _rows(csv.reader(itertools.chain(head, text), delimiter=delimiter))
    first = next(rows, None)
    if first is None:  # the line had only quotes or delimiters
        raise AddressListError("the file is empty")
    line, header = first
    names = [cell.strip().lower() for cell in header]
    if field in names:
        return rows, names.index(field), delimiter
    if sum(1 for name in names if name) == 1:
        return itertools.chain([(line, header)], rows), None, delimiter
    raise AddressListError(
        f"no {field} column: give one {field} a line, or a header row with a {field} column "
        f"(the first line has {', '.join(repr(name) for name in names)})")


def _rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each non-blank record; the line is where the record ends."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise AddressListError(
                f"line {reader.line_num} is not readable as CSV: {exc}") from exc
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


class _Tally:
    """The counts of a list as it is read, and its distinct valid addresses."""

    def __init__(self) -> None:
        self.total = self.invalid_count = self.duplicates = self.unknown = 0
        self.addresses: list[str] = []
        self.examples: list[InvalidAddress] = []
        self.seen: set[str] = set()
        self.pending: list[str] = []  # not yet looked up among members

    def invalid(self, line: int, value: str, reason: str) -> None:
        self.invalid_count += 1
        if len(self.examples) < INVALID_EXAMPLES_MAX:
            if len(value) > _VALUE_SHOWN_MAX:
                value = value[:_VALUE_SHOWN_MAX] + "…"
            self.examples.append(InvalidAddress(line=line, value=value, reason=reason))

    def valid(self, address: str, *, field: str) -> None:
        if address in self.seen:
            self.duplicates += 1
            return
        self.seen.add(address)
        self.addresses.append(address)
        self.pending.append(address)
        if len(self.pending) >= LOOKUP_CHUNK:
            self.lookup(field=field)

    def lookup(self, *, field: str) -> None:
        """Count the pending addresses no member has: one query for the chunk."""
        if not self.pending:
            return
        self.unknown += len(self.pending) - len(_known(self.pending, field=field))
        self.pending = []


def _known(addresses: list[str], *, field: str) -> set[str]:
    """Those of `addresses` some member has in `field`."""
    if connection.vendor != "postgresql":
        return set(Member.objects.filter(**{f"{field}__in": addresses})
                   .order_by().values_list(field, flat=True).distinct())
    # One array parameter: with `IN` and 5,000 placeholders psycopg spends seven times the
    # query's own time converting them (66 ms against 9 ms a chunk).
    quote = connection.ops.quote_name
    table, column = quote(Member._meta.db_table), quote(Member._meta.get_field(field).column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} = ANY(%s)",
                       [addresses])
        return {address for (address,) in cursor.fetchall()}


class _Capped(io.RawIOBase):
    """The uploaded file, read through a count that stops at LIST_BYTES_MAX; closing it
    leaves the file open."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        self.size += len(data)
        if self.size > LIST_BYTES_MAX:
            raise AddressListError(
                f"the file is larger than {LIST_BYTES_MAX // (1024 * 1024)} MB; split it")
        buffer[:len(data)] = data
        return len(data)
