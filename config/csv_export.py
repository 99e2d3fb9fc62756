"""CSV downloads of the back office's reports: cells a spreadsheet cannot run, lines written
one at a time, and the download response around them.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which some
spreadsheets skip before reading a formula) is a formula to Excel, LibreOffice and Google
Sheets. Report cells carry text others typed (a mailing's or a gateway's name) and text a
provider sent (an error message), so every text cell gets a leading apostrophe there: the
spreadsheet shows the text as written and runs nothing. Numbers are written as numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """The file-like object csv.writer wants: `write` hands the line back instead."""

    def write(self, line: str) -> str:
        return line


def csv_cell(value: Any) -> Any:
    """A value as a report cell: None empty, dates in ISO 8601, text never a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The header and then each row as a CSV line, every cell through `csv_cell`."""
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def csv_response(lines: Iterable[str], *, filename: str) -> StreamingHttpResponse:
    """A streamed download of CSV lines, saved as `filename`."""
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
