"""`manage.py roles_sync`: make the staff roles' groups hold exactly config.roles' permissions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from config.roles import roles_sync


class Command(BaseCommand):
    help = ("Create the staff roles' groups (marketer, analyst, support, administrator) and give "
            "each exactly its permissions from config/roles.py; prints what changed. "
            "`migrate` runs it too.")

    def handle(self, *args: Any, **options: Any) -> None:
        changes = roles_sync()
        for change in changes:
            self.stdout.write(str(change))
        if not changes:
            self.stdout.write("Roles already in sync.")
