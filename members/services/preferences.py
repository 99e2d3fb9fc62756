"""What a signed-in member decides about the messages they get, from the account pages (consent
source `account_page`) or the app (`app`): marketing consent per channel and per subscription
category, the language, and their own quiet hours.

Consent changes go through the ledger (`member_preferences_save` -> `consent_record`), so the
proof reads the same as from any other door; only what differs from the current state is
recorded. The language goes through `member_upsert`, the profile's one door. The quiet hours are
the member's own: no marketing on any channel between `starts_at` and `ends_at` in their time
zone, honoured when a batch is claimed (communications.services.compliance) beside the
program's quiet hours per channel. Everything is checked before anything is written, so a
refused change leaves the member as they were.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from members.models import ConsentEvent, ConsentSource, Member
from members.services.consents import email_double_opt_in_pending
from members.services.profiles import member_upsert
from members.services.unsubscribe import (
    MemberPreferences,
    member_preferences_current,
    member_preferences_save,
)

# The doors of this service and how each names itself in the ledger's consent text.
SOURCE_PAGES = {ConsentSource.ACCOUNT_PAGE: "Account preferences",
                ConsentSource.APP: "App preferences"}


@dataclass(frozen=True)
class QuietHours:
    starts_at: dt.time
    ends_at: dt.time


@dataclass(frozen=True)
class AccountPreferences:
    consents: MemberPreferences
    language: str
    timezone: str
    quiet_hours: QuietHours | None
    email_confirmation_pending: bool


def account_preferences_current(*, member: Member) -> AccountPreferences:
    """The member's preferences as the account page and the app show them."""
    quiet = (QuietHours(member.quiet_hours_start, member.quiet_hours_end)
             if member.quiet_hours_start is not None and member.quiet_hours_end is not None
             else None)
    return AccountPreferences(
        consents=member_preferences_current(member=member), language=member.language,
        timezone=member.timezone, quiet_hours=quiet,
        email_confirmation_pending=email_double_opt_in_pending(member=member))


def account_preferences_errors(*, current: AccountPreferences,
                               channels: Mapping[str, bool] | None,
                               language: str | None,
                               quiet_hours: QuietHours | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    offered = {preference.channel for preference in current.consents.channels}
    for channel in channels or {}:
        if channel not in offered:
            errors[f"channels.{channel}"] = (
                "not offered to this member: no address on this channel")
    languages = [code for code, _ in settings.LANGUAGES]
    if language is not None and language not in languages:
        errors["language"] = f"use one of {', '.join(languages)}"
    if quiet_hours is not None and quiet_hours.starts_at == quiet_hours.ends_at:
        errors["quiet_hours"] = "the quiet hours must end at another time than they start"
    return errors


class Unchanged:
    """Leave the quiet hours as they are (None would clear them)."""


UNCHANGED = Unchanged()


@transaction.atomic
def account_preferences_save(*, member: Member, source: str,
                             channels: Mapping[str, bool] | None = None,
                             categories: Mapping[str, bool] | None = None,
                             language: str | None = None,
                             quiet_hours: QuietHours | Unchanged | None = UNCHANGED,
                             ip_address: str | None = None,
                             user_agent: str = "") -> list[ConsentEvent]:
    """Apply what the member changed; a part left out (None; `UNCHANGED` for the quiet hours,
    whose None clears them) stays as it is. Returns the ledger events written.

    Raises ValidationError keyed by the part (`channels.<channel>`, `categories.<code>`,
    `language`, `quiet_hours`) and changes nothing when any part is refused.
    """
    if source not in SOURCE_PAGES:
        raise ValueError(f"preferences are changed from the account or the app, not {source!r}")
    current = account_preferences_current(member=member)
    wanted_quiet = current.quiet_hours if isinstance(quiet_hours, Unchanged) else quiet_hours
    errors = account_preferences_errors(current=current, channels=channels, language=language,
                                        quiet_hours=wanted_quiet)
    if errors:
        raise ValidationError(errors)
    events = []
    if channels or categories:
        # Raises for an unknown category before anything is recorded (it checks first).
        events = member_preferences_save(
            member=member, channels=channels or {}, categories=categories or {},
            ip_address=ip_address, user_agent=user_agent, source=source,
            page=SOURCE_PAGES[source])
    if language is not None and language != member.language:
        member_upsert(external_id=member.external_id, data={"language": language})
        member.language = language
    if wanted_quiet != current.quiet_hours:
        member.quiet_hours_start = wanted_quiet.starts_at if wanted_quiet else None
        member.quiet_hours_end = wanted_quiet.ends_at if wanted_quiet else None
        member.save(update_fields=["quiet_hours_start", "quiet_hours_end", "updated_at"])
    return events
