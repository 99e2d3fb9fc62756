"""The audit log: one row per privacy request or support change, written by the service."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from members.models import AuditEntry


def audit_record(*, action: str, actor: AbstractBaseUser | None, member_id: int | None = None,
                 detail: dict[str, Any] | None = None) -> AuditEntry:
    """Write one audit entry. `detail` must hold no personal data: it outlives erasure."""
    return AuditEntry.objects.create(
        action=action,
        actor=actor if actor is not None and actor.is_authenticated else None,
        member_id=member_id,
        detail=detail or {},
    )
