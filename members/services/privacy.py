"""A member's privacy rights: a copy of everything held about them, and erasure.

`members` is the base of the dependency graph, so the data other apps hold (messages, orders,
the loyalty account) comes through `members.hooks.MEMBER_EXPORT` / `MEMBER_ERASE`, which those
apps fill in their `AppConfig.ready()`.

Erasure anonymizes rather than deletes: the member row, the consent ledger and the message rows
stay so that aggregate counts (mailing funnels, revenue) keep adding up and the program can
still prove when consent was withdrawn. What identifies the person is blanked or deleted.
Addresses on the suppression list stay there on purpose: it is what keeps an address that
asked not to be contacted from being contacted again, whoever holds it next.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q

from members import hooks
from members.models import (
    AuditEntry,
    Consent,
    ConsentEvent,
    ConsentSource,
    Device,
    Member,
    MessengerAccount,
)
from members.services.audit import audit_record
from members.services.consents import consent_record

# Profile fields that identify a person and their blank values after erasure. `external_id` is
# replaced, not blanked (it is unique), because the loyalty engine's id points at the person.
_ERASED_PROFILE = {
    "first_name": "", "last_name": "", "email": "", "email_verified_at": None, "phone": "",
    "phone_verified_at": None, "birth_date": None, "gender": "", "city": "", "region": "",
    "country": "", "latitude": None, "longitude": None, "registration_source": "",
    "custom_attributes": {},
}


def member_data_export(*, member: Member, by: AbstractBaseUser | None) -> dict[str, Any]:
    """Everything the program holds about the member, as plain JSON values, and an audit entry.

    Sections: profile, devices, messenger_accounts, consents (current state), consent_history
    (the ledger), plus what other apps add through `hooks.MEMBER_EXPORT` (messages, orders,
    loyalty_account). Dates are ISO 8601 strings, decimals strings.
    """
    export: dict[str, Any] = {
        "profile": {field.attname: getattr(member, field.attname)
                    for field in Member._meta.concrete_fields},
        "devices": list(
            Device.objects.filter(member=member).order_by("id")
            .values("platform", "token", "app", "last_seen_at", "is_active", "created_at")
        ),
        "messenger_accounts": list(
            MessengerAccount.objects.filter(member=member).order_by("id")
            .values("network", "account_id", "is_active", "verified_at", "created_at")
        ),
        "consents": list(
            Consent.objects.filter(member=member).order_by("channel", "purpose", "category__code")
            .values("channel", "purpose", "state", "source", "recorded_at",
                    category_code=F("category__code"))
        ),
        "consent_history": list(
            ConsentEvent.objects.filter(member=member).order_by("recorded_at", "id")
            .values("channel", "purpose", "action", "source", "recorded_at", "ip_address",
                    "user_agent", "consent_text", "reason",
                    category_code=F("category__code"))
        ),
    }
    for handler in hooks.MEMBER_EXPORT:
        for section, data in handler(member).items():
            _section_add(export, section, data)
    # One encoder for every app's values, so dates and decimals look the same in each section.
    plain: dict[str, Any] = json.loads(json.dumps(export, cls=DjangoJSONEncoder))
    audit_record(action=AuditEntry.Action.DATA_EXPORT, actor=by, member_id=member.pk,
                 detail={"sections": {name: _count(data) for name, data in plain.items()}})
    return plain


def _count(data: Any) -> int:
    return len(data) if isinstance(data, list) else int(data is not None)


def _section_add(export: dict[str, Any], section: str, data: Any) -> None:
    """A handler may add fields to a section that already exists (loyalty adds the tier to the
    profile); anything else claiming a taken section is a bug in that handler."""
    if section not in export:
        export[section] = data
    elif isinstance(export[section], dict) and isinstance(data, dict):
        export[section].update(data)
    else:
        raise ValueError(f"privacy export: two handlers both provide the {section!r} section")


@transaction.atomic
def member_erase(*, member: Member, by: AbstractBaseUser | None, reason: str) -> Member:
    """Anonymize the member and what other apps hold about them, in one transaction.

    Every granted consent is withdrawn first (source `erasure`) so the proof of the withdrawal
    stays in the ledger; the ledger then loses the evidence that identifies a person (IP, user
    agent) but keeps what was agreed to and when. Refuses an erased member and a blank reason.
    """
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "say why the member is erased (e.g. the request ticket)"})
    member = Member.objects.select_for_update().get(pk=member.pk)
    if member.status == Member.Status.ERASED:
        raise ValidationError({"member": "this member is already erased"})

    # Every grant goes, marketing or service, whole channel or category, each withdrawal in
    # the ledger: an erased member holds no grant, and the proof of withdrawal stays.
    withdrawn = [
        consent_record(member=member, channel=channel, purpose=purpose, category=category,
                       action=ConsentEvent.Action.WITHDRAW, source=ConsentSource.ERASURE,
                       reason=reason, actor=by)
        for channel, purpose, category in _granted_consents(member=member)
    ]
    events_scrubbed = ConsentEvent.objects.filter(member=member).exclude(
        ip_address__isnull=True, user_agent=""
    ).update(ip_address=None, user_agent="")

    account_ids = list(MessengerAccount.objects.filter(member=member).values_list("pk", flat=True))
    devices_deleted, _ = Device.objects.filter(member=member).delete()
    accounts_deleted, _ = MessengerAccount.objects.filter(member=member).delete()

    for field, blank in _ERASED_PROFILE.items():
        setattr(member, field, blank)
    member.external_id = f"erased-{uuid.uuid4().hex}"
    member.status = Member.Status.ERASED
    member.save(update_fields=[*_ERASED_PROFILE, "external_id", "status", "updated_at"])
    admin_log_scrubbed = _admin_log_scrub(member=member, messenger_account_ids=account_ids)

    counts: dict[str, int] = {}
    for handler in hooks.MEMBER_ERASE:
        counts.update(handler(member) or {})
    audit_record(action=AuditEntry.Action.ERASURE, actor=by, member_id=member.pk, detail={
        "reason": reason, "consents_withdrawn": len(withdrawn),
        "consent_events_scrubbed": events_scrubbed, "devices_deleted": devices_deleted,
        "messenger_accounts_deleted": accounts_deleted,
        "admin_log_entries_scrubbed": admin_log_scrubbed, **counts,
    })
    return member


def _granted_consents(*, member: Member) -> list[tuple[str, str, Any]]:
    granted = (Consent.objects.filter(member=member, state=Consent.State.GRANTED)
               .select_related("category").order_by("channel", "purpose", "category_id"))
    return [(consent.channel, consent.purpose, consent.category) for consent in granted]


def _admin_log_scrub(*, member: Member, messenger_account_ids: list[int]) -> int:
    """The admin history names objects by their str(): a member's name, a messenger id, also
    inside the change message when an inline row was added. Keep the row (who changed what,
    when), drop the names."""
    types = ContentType.objects.get_for_models(Member, MessengerAccount)
    return LogEntry.objects.filter(
        Q(content_type=types[Member], object_id=str(member.pk))
        | Q(content_type=types[MessengerAccount],
            object_id__in=[str(pk) for pk in messenger_account_ids])
    ).update(object_repr="(erased)", change_message="")
