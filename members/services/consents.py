"""The consent ledger: every grant and withdrawal is an event; the current state follows it.

One door: nothing else writes ConsentEvent or Consent rows (the CSV import writes both with
the same rules, set-based). An opted-out member must never be contacted on that channel again,
so a withdrawal takes effect in the same transaction that records it, and the next audience
snapshot sees it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from members import hooks
from members.models import (
    AuditEntry,
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    Member,
    Purpose,
    SubscriptionCategory,
)
from members.services.audit import audit_record

Action = ConsentEvent.Action


def _state_for(action: str) -> str:
    return Consent.State.GRANTED if action == Action.GRANT else Consent.State.WITHDRAWN


def consent_event_errors(*, channel: str, purpose: str, action: str, source: str,
                         category: SubscriptionCategory | None, reason: str,
                         actor: AbstractBaseUser | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    if channel not in Channel.values:
        errors["channel"] = f"unknown channel {channel!r}; use one of {', '.join(Channel.values)}"
    if purpose not in Purpose.values:
        errors["purpose"] = f"unknown purpose {purpose!r}; use one of {', '.join(Purpose.values)}"
    if action not in Action.values:
        errors["action"] = f"unknown action {action!r}; use one of {', '.join(Action.values)}"
    if source not in ConsentSource.values:
        errors["source"] = (f"unknown source {source!r}; "
                            f"use one of {', '.join(ConsentSource.values)}")
    if category is not None and purpose != Purpose.MARKETING:
        errors["category"] = "subscription categories apply to marketing consent only"
    if category is not None and action == Action.GRANT and not category.is_active:
        errors["category"] = "this subscription category is no longer offered"
    if source == ConsentSource.SUPPORT:
        if not reason.strip():
            errors["reason"] = "a support agent must say why the consent changed"
        if actor is None or not actor.is_authenticated:
            errors["actor"] = "a support change needs the agent who made it"
    return errors


@transaction.atomic
def consent_record(*, member: Member, channel: str, action: str, source: str,
                   purpose: str = Purpose.MARKETING,
                   category: SubscriptionCategory | None = None,
                   ip_address: str | None = None, user_agent: str = "",
                   consent_text: str = "", reason: str = "",
                   actor: AbstractBaseUser | None = None,
                   at: dt.datetime | None = None) -> ConsentEvent:
    """Append one grant or withdrawal to the ledger and bring the current state up to date.

    An event older than the current state (a late import of history) is kept in the ledger but
    does not overturn a newer decision.
    """
    errors = consent_event_errors(channel=channel, purpose=purpose, action=action,
                                  source=source, category=category, reason=reason, actor=actor)
    if member.status == Member.Status.ERASED and action == Action.GRANT:
        errors["member"] = "an erased member cannot give consent"
    if errors:
        raise ValidationError(errors)
    at = at or timezone.now()
    event = ConsentEvent.objects.create(
        member=member, channel=channel, purpose=purpose, category=category, action=action,
        source=source, recorded_at=at, ip_address=ip_address or None,
        user_agent=user_agent[:1000], consent_text=consent_text, reason=reason,
        actor=actor if actor is not None and actor.is_authenticated else None,
    )
    current = (Consent.objects.select_for_update()
               .filter(member=member, channel=channel, purpose=purpose, category=category)
               .first())
    if current is None:
        Consent.objects.create(member=member, channel=channel, purpose=purpose,
                               category=category, state=_state_for(action), source=source,
                               recorded_at=at)
    elif current.recorded_at <= at:
        current.state = _state_for(action)
        current.source = source
        current.recorded_at = at
        current.save(update_fields=["state", "source", "recorded_at"])
    if source == ConsentSource.SUPPORT:
        audit_record(action=AuditEntry.Action.CONSENT_CHANGE, actor=actor, member_id=member.pk,
                     detail={"consent_event_id": event.pk, "channel": channel,
                             "purpose": purpose, "category": category and category.code,
                             "action": action, "reason": reason})
    if (action == Action.GRANT and channel == Channel.EMAIL and purpose == Purpose.MARKETING
            and category is None and email_double_opt_in_pending(member=member)):
        member_id = member.pk
        for handler in hooks.EMAIL_CONFIRMATION_REQUESTED:
            transaction.on_commit(lambda handler=handler: handler(member_id))
    for handler in hooks.CONSENTS_CHANGED:
        handler([event])
    hooks.members_changed([member.pk])
    return event


def email_double_opt_in_pending(*, member: Member) -> bool:
    """True when the program asks for double opt-in and this member's email is unconfirmed."""
    return bool(settings.ENGAGE_EMAIL_DOUBLE_OPT_IN and member.email
                and member.email_verified_at is None)


@transaction.atomic
def consent_withdraw_all(*, member: Member, source: str,
                         channels: Iterable[str] | None = None,
                         ip_address: str | None = None, user_agent: str = "",
                         reason: str = "", actor: AbstractBaseUser | None = None
                         ) -> list[ConsentEvent]:
    """Withdraw marketing consent on every channel (or the given ones) the member granted."""
    granted = Consent.objects.filter(member=member, purpose=Purpose.MARKETING, category=None,
                                     state=Consent.State.GRANTED)
    if channels is not None:
        granted = granted.filter(channel__in=list(channels))
    return [
        consent_record(member=member, channel=channel, action=Action.WITHDRAW, source=source,
                       ip_address=ip_address, user_agent=user_agent, reason=reason,
                       actor=actor)
        for channel in granted.values_list("channel", flat=True).order_by("channel")
    ]

