"""The Fernet keys every app encrypts its stored secrets with (ENGAGE_SECRETS_KEY: comma-separated,
newest first, validated when settings load). Kept here, below every app, so that an app low in the
dependency order (loyalty's webhook secrets) encrypts with the same keys as communications'
gateway credentials without importing communications."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _multi_fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ENGAGE_SECRETS_KEY must be comma-separated Fernet keys (32 url-safe base64-encoded "
            "bytes each)") from exc


def engage_fernet() -> MultiFernet:
    return _multi_fernet(settings.ENGAGE_SECRETS_KEY)
