"""`manage.py import_members PATH [--dry-run] [--skip-bad-rows]`: members and consents from CSV."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from members.imports import members_import


class Command(BaseCommand):
    help = ("Import members with their consents from a CSV file (upsert by external_id; the "
            "columns are described in members/imports/). Every row is checked first; with "
            "any bad row nothing is imported, each one is printed to stderr as "
            "`line N, column C: reason` and the command exits 1, unless --skip-bad-rows.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The CSV file (UTF-8), or - for standard input.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check every row and count what would change; write nothing.")
        parser.add_argument("--skip-bad-rows", action="store_true",
                            help="Import the good rows and list the bad ones (exit 0).")

    def handle(self, *args: Any, path: str, dry_run: bool, skip_bad_rows: bool,
               **options: Any) -> None:
        source: contextlib.AbstractContextManager[BinaryIO]
        if path == "-":
            source = contextlib.nullcontext(sys.stdin.buffer)
        else:
            try:
                source = open(path, "rb")
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        with source as file:
            report = members_import(source=file, dry_run=dry_run, skip_bad_rows=skip_bad_rows)
        for row in report.bad_rows:
            self.stderr.write(f"line {row.line}, column {row.column or '-'}: {row.reason}")
        self.stdout.write(report.summary())
        if report.bad_rows and not skip_bad_rows:
            raise CommandError(f"{report.bad_lines} bad rows; nothing imported")
