"""Gateway credentials at rest: the secret settings of a gateway (an SMTP or SMPP password, an
FCM service account, an API token) are kept apart from its plain settings, as one Fernet token.

The keys come from ENGAGE_SECRETS_KEY (config.fernet, shared with the webhook secrets),
comma-separated, newest first: tokens are written with
the first key and read with any of them (MultiFernet), so a key is rotated by putting the new
one in front, running `manage.py gateway_secrets_rotate` (every token re-written with the new
key) and then dropping the old one.

Which settings are secret is each adapter's `secret_settings` (see gateways/base.py); the
adapter itself gets plain and secret settings merged, so no adapter reads this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import InvalidToken

from config.fernet import engage_fernet


class SecretsUnreadable(Exception):
    """The stored token was written with a key ENGAGE_SECRETS_KEY no longer holds."""


def secrets_encrypt(values: Mapping[str, Any]) -> str:
    """A Fernet token holding `values` as JSON; '' for no values (nothing to keep)."""
    if not values:
        return ""
    return engage_fernet().encrypt(
        json.dumps(dict(values), separators=(",", ":")).encode()).decode("ascii")


def secrets_decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        values = json.loads(engage_fernet().decrypt(token.encode("ascii")))
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
        return engage_fernet().rotate(token.encode("ascii")).decode("ascii")
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
