"""Gateway credentials at rest: the secret settings of a gateway (an SMTP or SMPP password, an
FCM service account, an API token) are kept apart from its plain settings, as one Fernet token.

The keys come from ENGAGE_SECRETS_KEY, comma-separated, newest first: tokens are written with
the first key and read with any of them (MultiFernet), so a key is rotated by putting the new
one in front, running `manage.py gateway_secrets_rotate` (every token re-written with the new
key) and then dropping the old one.

Which settings are secret is each adapter's `secret_settings` (see gateways/base.py); the
adapter itself gets plain and secret settings merged, so no adapter reads this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured


class SecretsUnreadable(Exception):
    """The stored token was written with a key ENGAGE_SECRETS_KEY no longer holds."""


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ENGAGE_SECRETS_KEY must be comma-separated Fernet keys (32 url-safe base64-encoded "
            "bytes each)") from exc


def secrets_fernet() -> MultiFernet:
    return _fernet(django_settings.ENGAGE_SECRETS_KEY)


def secrets_encrypt(values: Mapping[str, Any]) -> str:
    """A Fernet token holding `values` as JSON; '' for no values (nothing to keep)."""
    if not values:
        return ""
    return secrets_fernet().encrypt(
        json.dumps(dict(values), separators=(",", ":")).encode()).decode("ascii")


def secrets_decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        values = json.loads(secrets_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise SecretsUnreadable(
            "the gateway's secrets were encrypted with a key ENGAGE_SECRETS_KEY does not hold "
            "(put the old key back after the new one)") from exc
    return values if isinstance(values, dict) else {}


def secrets_rotate(token: str) -> str:
    """The same secrets under the current first key (raises SecretsUnreadable like decrypt)."""
    if not token:
        return ""
    try:
        return secrets_fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise SecretsUnreadable("the gateway's secrets cannot be read with ENGAGE_SECRETS_KEY"
                                ) from exc


def secret_setting_names(provider: str) -> tuple[str, ...]:
    """The setting names kept encrypted for a provider: its adapter's and the shared ones."""
    from communications.gateways import GATEWAYS
    from communications.gateways.base import SHARED_SECRET_SETTINGS

    adapter = GATEWAYS.get(provider)
    own = tuple(adapter.secret_settings) if adapter is not None else ()
    return tuple(dict.fromkeys((*SHARED_SECRET_SETTINGS, *own)))


def settings_split(provider: str, settings: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, secret): the provider's secret settings taken out of `settings`."""
    names = set(secret_setting_names(provider))
    plain = {key: value for key, value in settings.items() if key not in names}
    secret = {key: value for key, value in settings.items() if key in names}
    return plain, secret
