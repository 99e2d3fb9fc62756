"""API keys of the integration API: created, rotated and revoked here, and nowhere else.

A key reads `ek_<prefix>_<secret>`. The prefix is stored in clear so a marketer can tell keys
apart; the whole key is stored only as its SHA-256, so a leaked database gives no usable key.
SHA-256 without a salt is enough: the secret is 256 random bits, not a password to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from loyalty.integration.models import ApiKey

KEY_START = "ek_"
# last_used_at is for humans ("is this key still in use?"): writing it on every request would
# turn each read into a write, so it moves at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"


def _scopes_clean(scopes: Iterable[str]) -> list[str]:
    scopes = list(dict.fromkeys(scopes))
    unknown = [scope for scope in scopes if scope not in ApiKey.Scope.values]
    if unknown:
        raise ValidationError({"scopes": f"unknown scopes: {', '.join(unknown)}"})
    if not scopes:
        raise ValidationError({"scopes": "give the key at least one scope"})
    return scopes


def api_key_create(*, name: str, scopes: Iterable[str], by: object | None,
                   expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it with the key in clear, which is never available again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "is required"})
    prefix, key = _new_key()
    api_key = ApiKey.objects.create(
        name=name, prefix=prefix, key_hash=api_key_hash(key), scopes=_scopes_clean(scopes),
        created_by=by if getattr(by, "pk", None) else None, expires_at=expires_at)
    return api_key, key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, by: object | None) -> tuple[ApiKey, str]:
    """Replace a key by a new one with the same name and scopes; the old one keeps working for
    ENGAGE_API_KEY_ROTATION_GRACE, so callers can switch without a gap."""
    old = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if old.revoked_at is not None:
        raise ValidationError("a revoked key cannot be rotated; create a new one")
    grace_end = timezone.now() + settings.ENGAGE_API_KEY_ROTATION_GRACE
    if old.expires_at is None or old.expires_at > grace_end:
        old.expires_at = grace_end
        old.save(update_fields=["expires_at"])
    return api_key_create(name=old.name, scopes=old.scopes, by=by)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Stop a key at once (a key revoked already keeps its time)."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        # A save, not an update(): the audit log records who revoked it.
        locked.save(update_fields=["revoked_at"])
    api_key.revoked_at = locked.revoked_at
    return api_key


def api_key_valid(key: str) -> ApiKey | None:
    """The live key matching `key` (not revoked, not expired), or None."""
    now = timezone.now()
    api_key = (ApiKey.objects.filter(key_hash=api_key_hash(key), revoked_at__isnull=True)
               .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).first())
    if api_key is None:
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
