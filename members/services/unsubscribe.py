"""Leaving from a message: RFC 8058 one-click, the preference page, unsubscribe from all.

Every change goes through the consent ledger (`consent_record`, `consent_withdraw_all`), so the
proof of a withdrawal is the same whichever door it came through, and the next audience
snapshot already skips the member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from members.models import (
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    Member,
    MessengerAccount,
    Purpose,
    SubscriptionCategory,
)
from members.services.consents import consent_record, consent_withdraw_all
from members.unsubscribe import UnsubscribeToken

Action = ConsentEvent.Action
State = Consent.State


@dataclass(frozen=True)
class ChannelPreference:
    channel: str
    label: str
    subscribed: bool


@dataclass(frozen=True)
class CategoryPreference:
    code: str
    name: str
    description: str
    subscribed: bool


@dataclass(frozen=True)
class MemberPreferences:
    channels: list[ChannelPreference]
    categories: list[CategoryPreference]


def _marketing_states(member: Member) -> tuple[dict[str, str], dict[tuple[str, int], str]]:
    """({channel: state}, {(channel, category id): state}) of the member, in one query."""
    channels: dict[str, str] = {}
    categories: dict[tuple[str, int], str] = {}
    rows = Consent.objects.filter(member=member, purpose=Purpose.MARKETING).values_list(
        "channel", "category_id", "state")
    for channel, category_id, state in rows:
        if category_id is None:
            channels[channel] = state
        else:
            categories[(channel, category_id)] = state
    return channels, categories


def member_preferences_current(*, member: Member) -> MemberPreferences:
    """What the preference page shows, and what `member_preferences_save` compares against.

    Kept beside the save so both read the state the same way. A channel is offered when the
    member can be reached on it or has ever had a consent on it; a category counts as
    subscribed until it is withdrawn on any channel.
    """
    channel_states, category_states = _marketing_states(member)
    reachable = set(channel_states)
    if member.email:
        reachable.add(Channel.EMAIL)
    if member.phone:
        reachable.add(Channel.SMS)
    if member.devices.filter(is_active=True).exists():
        reachable.add(Channel.PUSH)
    for network in member.messenger_accounts.filter(is_active=True).values_list("network",
                                                                                flat=True):
        reachable.add(Channel.VIBER if network == MessengerAccount.Network.VIBER
                      else Channel.SOCIAL)
    channels = [
        ChannelPreference(channel=value, label=label,
                          subscribed=channel_states.get(value) == State.GRANTED)
        for value, label in Channel.choices if value in reachable
    ]
    withdrawn = {category_id for (_, category_id), state in category_states.items()
                 if state == State.WITHDRAWN}
    categories = [
        CategoryPreference(code=category.code, name=category.name,
                           description=category.description,
                           subscribed=category.pk not in withdrawn)
        for category in SubscriptionCategory.objects.filter(is_active=True)
    ]
    return MemberPreferences(channels=channels, categories=categories)


def unsubscribe_one_click(*, member: Member, link: UnsubscribeToken, ip_address: str | None,
                          user_agent: str) -> ConsentEvent | None:
    """RFC 8058: withdraw marketing consent on the link's channel at once, no login.

    `link` is the verified token of the link (`members.unsubscribe.unsubscribe_token_member`).
    Mail providers may POST more than once; a channel already withdrawn records nothing new
    (the first event is the proof).
    """
    current = (Consent.objects.filter(member=member, channel=link.channel,
                                      purpose=Purpose.MARKETING, category=None)
               .values_list("state", flat=True).first())
    if current == State.WITHDRAWN:
        return None
    mailing = f", mailing {link.mailing_id}" if link.mailing_id is not None else ""
    return consent_record(
        member=member, channel=link.channel, action=Action.WITHDRAW,
        source=ConsentSource.UNSUBSCRIBE_LINK, ip_address=ip_address, user_agent=user_agent,
        consent_text=(f"One-click unsubscribe (RFC 8058 List-Unsubscribe-Post) from "
                      f"{Channel(link.channel).label} marketing{mailing}"),
    )


def _page_text(page: str, subject: str, wanted: bool) -> str:
    return f"{page}: {subject} {'checked' if wanted else 'unchecked'}"


@transaction.atomic
def member_preferences_save(*, member: Member, channels: Mapping[str, bool],
                            categories: Mapping[str, bool], ip_address: str | None,
                            user_agent: str, source: str = ConsentSource.ACCOUNT_PAGE,
                            page: str = "Preference page") -> list[ConsentEvent]:
    """Apply the preference form: record only what differs from the current state.

    `channels` maps a channel to "send me marketing here"; `categories` maps a subscription
    category code to "send me this kind of marketing", applied on every channel so that leaving
    partner offers by email also keeps them out of SMS. Granting email goes through
    `consent_record`, which asks for double opt-in when the program requires it. `source` and
    `page` (the screen's name, quoted in each event's consent text) say where the member was.
    """
    errors: dict[str, str] = {}
    for channel in channels:
        if channel not in Channel.values:
            errors[f"channels.{channel}"] = (
                f"unknown channel; use one of {', '.join(Channel.values)}")
    known = {category.code: category
             for category in SubscriptionCategory.objects.filter(code__in=list(categories))}
    for code in categories:
        if code not in known:
            errors[f"categories.{code}"] = "unknown subscription category"
    if errors:
        raise ValidationError(errors)

    channel_states, category_states = _marketing_states(member)
    evidence = {"member": member, "source": source,
                "ip_address": ip_address, "user_agent": user_agent}
    events: list[ConsentEvent] = []
    for channel, wanted in channels.items():
        if wanted == (channel_states.get(channel) == State.GRANTED):
            continue
        events.append(consent_record(
            channel=channel, action=Action.GRANT if wanted else Action.WITHDRAW,
            consent_text=_page_text(page, f"receive marketing by {Channel(channel).label}",
                                    wanted),
            **evidence))
    for code, wanted in categories.items():
        category = known[code]
        for channel in Channel.values:
            subscribed = category_states.get((channel, category.pk)) != State.WITHDRAWN
            if wanted == subscribed:
                continue
            events.append(consent_record(
                channel=channel, category=category,
                action=Action.GRANT if wanted else Action.WITHDRAW,
                consent_text=_page_text(page, f"receive {category.name}", wanted),
                **evidence))
    return events


def member_unsubscribe_all(*, member: Member, ip_address: str | None,
                           user_agent: str) -> list[ConsentEvent]:
    """"Unsubscribe from all" on the preference page: every granted marketing channel."""
    return consent_withdraw_all(member=member, source=ConsentSource.UNSUBSCRIBE_LINK,
                                ip_address=ip_address, user_agent=user_agent)
