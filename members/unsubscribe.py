"""Unsubscribe tokens: who a link in a message belongs to, signed so it cannot be forged.

The token never expires: RFC 8058 asks that a List-Unsubscribe link keep working, and an old
newsletter's link must still let its reader leave. Rotating SECRET_KEY keeps old links valid as
long as the previous key is listed in SECRET_KEY_FALLBACKS, which Signer honours.

A token is `<member id>.<channel>[.<mailing id>].<signature>`: only URL-safe characters, short
enough for a header line, and signed with a salt of its own so no other signed value of the
project can be replayed as one. It is built for every message of a batch, so it is a plain
HMAC over a few characters: no JSON, no compression, no database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.signing import BadSignature, Signer
from django.urls import reverse

from members.models import Channel, Member

_SALT = "engage.members.unsubscribe"
_SEPARATOR = "."


class UnsubscribeTokenInvalid(ValueError):
    """The token was altered, truncated or never issued by us."""


@dataclass(frozen=True)
class UnsubscribeToken:
    member_id: int
    channel: str
    mailing_id: int | None = None


def _signer() -> Signer:
    return Signer(salt=_SALT, sep=_SEPARATOR)


def _payload(*, member_id: int, channel: str, mailing_id: int | None) -> str:
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    parts = [str(int(member_id)), channel]
    if mailing_id is not None:
        parts.append(str(int(mailing_id)))
    return _SEPARATOR.join(parts)


def unsubscribe_token(*, member_id: int, channel: str, mailing_id: int | None = None) -> str:
    return _signer().sign(_payload(member_id=member_id, channel=channel, mailing_id=mailing_id))


def unsubscribe_token_read(token: str) -> UnsubscribeToken:
    """The token's content, or UnsubscribeTokenInvalid if it was not signed by us."""
    try:
        payload = _signer().unsign(token)
    except BadSignature as exc:
        raise UnsubscribeTokenInvalid("the unsubscribe link is not valid") from exc
    parts = payload.split(_SEPARATOR)
    # A valid signature over a malformed payload means the format changed under an old key;
    # it is still not a link we can act on.
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:1] + parts[2:]) \
            or parts[1] not in Channel.values:
        raise UnsubscribeTokenInvalid("the unsubscribe link is not valid")
    return UnsubscribeToken(member_id=int(parts[0]), channel=parts[1],
                            mailing_id=int(parts[2]) if len(parts) == 3 else None)


def unsubscribe_token_member(token: str) -> tuple[UnsubscribeToken, Member]:
    """The token and the member it names; a member that no longer exists is an invalid link."""
    data = unsubscribe_token_read(token)
    member = Member.objects.filter(pk=data.member_id).first()
    if member is None:
        raise UnsubscribeTokenInvalid("the unsubscribe link is not valid")
    return data, member


def unsubscribe_urls(*, member_ids: Iterable[int], channel: str,
                     mailing_id: int | None = None) -> dict[int, str]:
    """{member id: absolute link} for a batch: the preference page and the RFC 8058 POST target.

    Resolving the URL and building the signer cost more than the signature itself, so they
    happen once per batch, not once per message.
    """
    placeholder = "TOKEN"
    page = settings.ENGAGE_PUBLIC_URL + reverse("members-public:unsubscribe", args=[placeholder])
    head, tail = page.split(placeholder)
    signer = _signer()
    return {
        member_id: head + signer.sign(_payload(member_id=member_id, channel=channel,
                                                mailing_id=mailing_id)) + tail
        for member_id in member_ids
    }


def unsubscribe_url(*, member_id: int, channel: str, mailing_id: int | None = None) -> str:
    """The absolute link one message carries (see `unsubscribe_urls`)."""
    return unsubscribe_urls(member_ids=[member_id], channel=channel,
                            mailing_id=mailing_id)[member_id]
