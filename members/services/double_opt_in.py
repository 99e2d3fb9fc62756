"""Double opt-in: an email address becomes marketable once its owner confirms it.

The confirmation link is signed over the member and the address, so a link mailed to an old
address cannot confirm a new one, and it expires (unlike an unsubscribe link, a confirmation
is a grant and must be fresh).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from members.models import Channel, ConsentEvent, ConsentSource, Member
from members.services.consents import consent_record

_SALT = "engage.email-confirmation"
CONFIRMATION_TEXT = "Confirmed the email address by following the confirmation link."


@dataclass(frozen=True)
class EmailConfirmation:
    member: Member
    already_confirmed: bool


def _address_digest(email: str) -> str:
    # The token carries a digest, not the address: links end up in logs and proxies.
    return hashlib.sha256(email.encode()).hexdigest()[:16]


def email_confirmation_token(*, member: Member) -> str:
    return signing.TimestampSigner(salt=_SALT).sign_object(
        [member.pk, _address_digest(member.email)], compress=True
    )


def email_confirmation_url(*, member: Member) -> str:
    token = email_confirmation_token(member=member)
    return settings.ENGAGE_PUBLIC_URL + reverse("members-public:email-confirm", args=[token])


def email_confirmation_read(token: str, *, lock: bool = False) -> Member:
    """The member a confirmation token is for, or ValidationError saying why it is not valid.

    `lock`: the member row is locked for the rest of the transaction (confirming it).
    """
    try:
        member_id, digest = signing.TimestampSigner(salt=_SALT).unsign_object(
            token, max_age=settings.ENGAGE_EMAIL_CONFIRMATION_MAX_AGE
        )
    except signing.SignatureExpired as exc:
        raise ValidationError({"token": "this confirmation link has expired"}) from exc
    except signing.BadSignature as exc:
        raise ValidationError({"token": "this confirmation link is not valid"}) from exc
    members = Member.objects.select_for_update() if lock else Member.objects
    member = members.filter(pk=member_id, status=Member.Status.ACTIVE).first()
    if member is None or not member.email or _address_digest(member.email) != digest:
        raise ValidationError({"token": "this link is for an address that is no longer used"})
    return member


@transaction.atomic
def email_confirm(*, token: str, ip_address: str | None = None,
                  user_agent: str = "") -> EmailConfirmation:
    """Mark the address confirmed and record the confirmation in the consent ledger."""
    member = email_confirmation_read(token, lock=True)
    if member.email_verified_at is not None:
        return EmailConfirmation(member=member, already_confirmed=True)
    member.email_verified_at = timezone.now()
    member.save(update_fields=["email_verified_at", "updated_at"])
    consent_record(member=member, channel=Channel.EMAIL, action=ConsentEvent.Action.GRANT,
                   source=ConsentSource.DOUBLE_OPT_IN, ip_address=ip_address,
                   user_agent=user_agent, consent_text=CONFIRMATION_TEXT)
    return EmailConfirmation(member=member, already_confirmed=False)
