"""Inbound SMS keywords: a reply of STOP (or a local equivalent) withdraws SMS marketing consent.

Carriers and regulators expect STOP to work whatever the case or the punctuation a phone adds
("Stop.", "stop!"), but only as the whole message: "please don't stop the offers" is not an
opt-out. Every gateway that receives SMS (the HTTP webhook, SMPP deliver_sm) calls
`sms_inbound_apply`, so the rule is the same on every route.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef

from members.models import Channel, Consent, ConsentEvent, ConsentSource, Member, Purpose
from members.services.consents import consent_record
from members.services.phones import phone_normalize


def _keyword_form(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).strip()
    # Trailing punctuation only ("STOP!", "СТОП."): one inside the text makes it a sentence.
    while text and unicodedata.category(text[-1]).startswith("P"):
        text = text[:-1].rstrip()
    return text.casefold()


def sms_stop_keyword(text: str) -> bool:
    """True when the whole message is one of `ENGAGE_SMS_STOP_KEYWORDS`."""
    keywords = {_keyword_form(keyword) for keyword in settings.ENGAGE_SMS_STOP_KEYWORDS}
    return _keyword_form(text) in keywords - {""}


def sms_sender_normalize(raw: str) -> str:
    """The sender of an inbound SMS in E.164, or ValidationError naming `phone`.

    Providers usually pass the MSISDN without its plus sign (4915112345678); with no country
    to assume, digits alone are read as international.
    """
    raw = raw.strip()
    if raw.isdigit():
        raw = f"+{raw}"
    return phone_normalize(raw)


@transaction.atomic
def sms_inbound_apply(*, phone: str, text: str, received_at: dt.datetime | None = None,
                      gateway_name: str = "") -> list[ConsentEvent]:
    """Act on one inbound SMS: a STOP keyword withdraws SMS marketing from its sender.

    Every member holding the number is withdrawn (a shared family phone opts everyone out: the
    person holding it asked not to get these texts). Members already withdrawn get no new
    event; any other text returns [] and changes nothing.
    """
    if not sms_stop_keyword(text):
        return []
    return sms_stop_apply(phone=phone, text=text, received_at=received_at,
                          gateway_name=gateway_name)


@transaction.atomic
def sms_stop_apply(*, phone: str, text: str, received_at: dt.datetime | None = None,
                   gateway_name: str = "") -> list[ConsentEvent]:
    """Withdraw SMS marketing from every member holding `phone`: they sent STOP, to us or (as
    an SMS provider reports) to the provider's number. `text` is kept as the evidence."""
    e164 = sms_sender_normalize(phone)
    if not e164:
        raise ValidationError({"phone": "the sender's number is missing"})
    withdrawn = Consent.objects.filter(
        member=OuterRef("pk"), channel=Channel.SMS, purpose=Purpose.MARKETING, category=None,
        state=Consent.State.WITHDRAWN,
    )
    members = list(Member.objects.filter(phone=e164).filter(~Exists(withdrawn)))
    return [
        consent_record(
            member=member, channel=Channel.SMS, action=ConsentEvent.Action.WITHDRAW,
            source=ConsentSource.SMS_STOP, consent_text=text, at=received_at,
            user_agent=f"SMS gateway {gateway_name}" if gateway_name else "",
        )
        for member in members
    ]
