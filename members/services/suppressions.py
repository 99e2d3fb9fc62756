"""The suppression list: addresses nobody may contact, whoever the member holding them is."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from members.models import AuditEntry, Channel, Suppression
from members.services.audit import audit_record
from members.services.phones import phone_normalize
from members.services.profiles import email_normalize

SUPPRESSIBLE_CHANNELS = (Channel.EMAIL, Channel.SMS)


def address_normalize(*, channel: str, address: str) -> str:
    """The form an address is stored and compared in: lower-case email, E.164 phone."""
    if channel == Channel.EMAIL:
        normalized = email_normalize(address)
    elif channel == Channel.SMS:
        normalized = phone_normalize(address)
    else:
        raise ValidationError({"channel": f"addresses of {channel!r} cannot be suppressed; "
                                          f"use one of {', '.join(SUPPRESSIBLE_CHANNELS)}"})
    if not normalized:
        raise ValidationError({"address": "an address is required"})
    return normalized


@transaction.atomic
def suppression_add(*, channel: str, address: str, reason: str, source: str = "",
                    note: str = "", by: AbstractBaseUser | None = None) -> Suppression:
    """Suppress an address; suppressing it again keeps the first record (and its reason)."""
    if reason not in Suppression.Reason.values:
        raise ValidationError({"reason": f"must be one of {', '.join(Suppression.Reason.values)}"})
    address = address_normalize(channel=channel, address=address)
    suppression, created = Suppression.objects.get_or_create(
        channel=channel, address=address,
        defaults={"reason": reason, "source": source, "note": note,
                  "created_by": by if by is not None and by.is_authenticated else None},
    )
    if created and by is not None:
        audit_record(action=AuditEntry.Action.SUPPRESSION_ADD, actor=by,
                     detail={"suppression_id": suppression.pk, "channel": channel,
                             "reason": reason})
    return suppression


@transaction.atomic
def suppression_remove(*, suppression: Suppression, by: AbstractBaseUser | None,
                       reason: str) -> None:
    if not reason.strip():
        raise ValidationError({"reason": "say why the address may be contacted again"})
    audit_record(action=AuditEntry.Action.SUPPRESSION_REMOVE, actor=by,
                 detail={"suppression_id": suppression.pk, "channel": suppression.channel,
                         "was": suppression.reason, "reason": reason})
    suppression.delete()


def suppressions_add_many(*, addresses: Iterable[tuple[str, str]], reason: str,
                          source: str = "") -> None:
    """Suppress (channel, address) pairs already in their stored form (a message's address),
    in one INSERT; addresses already suppressed keep their first record."""
    rows = [Suppression(channel=channel, address=address, reason=reason, source=source)
            for channel, address in set(addresses)
            if channel in SUPPRESSIBLE_CHANNELS and address]
    Suppression.objects.bulk_create(rows, ignore_conflicts=True)
