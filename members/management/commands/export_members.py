"""`manage.py export_members [--output PATH]`: members and their consents as CSV."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from members.exports import members_export_csv


class Command(BaseCommand):
    help = ("Write every member (erased ones aside) with their current marketing consents as "
            "CSV, in the columns import_members reads. Streamed: fine for millions.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", default="-",
                            help="The file to write (default: standard output).")

    def handle(self, *args: Any, output: str, **options: Any) -> None:
        if output == "-":
            for line in members_export_csv():
                self.stdout.write(line, ending="")
            return
        try:
            with open(output, "w", encoding="utf-8", newline="") as target:
                target.writelines(members_export_csv())
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from exc
