"""`manage.py gateway_secrets_rotate`: re-encrypt every gateway's secrets with the first key of
ENGAGE_SECRETS_KEY. Rotate a key by putting the new one in front (`new,old`), running this,
then dropping the old one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from communications.secrets import SecretsUnreadable
from communications.services.gateways import gateway_secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every gateway's secrets with the first key of ENGAGE_SECRETS_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = gateway_secrets_rotate()
        except SecretsUnreadable as exc:
            raise CommandError(f"{exc}; nothing was changed") from exc
        self.stdout.write(f"{count} gateway(s) re-encrypted with the first key.")
