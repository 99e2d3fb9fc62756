"""What a member would see: a template rendered for one member (or for sample data) per
channel, for the marketer's preview screen.

Rendering goes through the same sandbox and member context as dispatch
(`renderers.CompiledTemplate` over `renderers.member_context`), so a template that fails in
the preview fails the same way at send time, and a member's values reach the output only as
the sandbox gives them (escaped in the HTML part). Nothing here sends, records or changes
anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from communications.models import Gateway, Mailing, Message, Template
from communications.renderers import (
    MEMBER_VALUE_PATHS,
    CompiledTemplate,
    member_context,
)
from communications.services.audiences import mailing_audience
from communications.sms_encoding import (
    GSM7_PART,
    GSM7_SINGLE,
    UCS2_PART,
    UCS2_SINGLE,
    sms_parts,
)
from members.models import Channel, Member
from members.selectors import member_reachable

# The preview renders a real member's real unsubscribe link nowhere: a click inside the
# preview must not unsubscribe the member it shows.
PREVIEW_UNSUBSCRIBE_URL = "https://unsubscribe.invalid/preview"
# Used for a sample field left blank, so every placeholder shows something.
SAMPLE_DEFAULTS: dict[str, str] = {
    "first_name": "Anna", "last_name": "Example", "email": "anna@example.com",
    "phone": "+49151000000", "external_id": "SAMPLE-1", "language": "en",
}
SAMPLE_FIELDS = tuple(SAMPLE_DEFAULTS)
NO_GATEWAY_SENDER = "(the gateway's sender: choose a gateway)"
ENCODING_LABELS = {"gsm7": "GSM-7", "ucs2": "UCS-2"}
# What an inbox shows beside the subject when the email has no preheader.
SNIPPET_CHARS = 90


@dataclass(frozen=True)
class PreviewPerson:
    """Whom a preview renders for: a member, or sample data typed in (or defaulted)."""

    context: dict[str, Any]
    member_id: int | None = None
    label: str = ""

    @property
    def is_sample(self) -> bool:
        return self.member_id is None


@dataclass(frozen=True)
class EmailPreview:
    sender: str
    subject: str
    preheader: str  # the hidden preview text at the top of the HTML; '' when there is none
    snippet: str  # what the inbox shows beside the subject: the preheader or the text's start
    html: str  # '' when the email is plain text only
    text: str


@dataclass(frozen=True)
class SmsPreview:
    sender: str
    text: str
    characters: int
    encoding: str  # GSM-7 or UCS-2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2), what the segments hold
    segments: int
    single_limit: int  # what one segment holds in this encoding
    part_limit: int  # and each part of a longer text
    parts: list[str]


@dataclass(frozen=True)
class PushPreview:
    title: str
    body: str
    image_url: str
    link_url: str
    data: dict[str, str]


@dataclass(frozen=True)
class ChatPreview:
    network: str
    sender: str
    text: str
    image_url: str
    button_text: str
    link_url: str


@dataclass
class TemplatePreview:
    template: Template
    person: PreviewPerson
    gateway: Gateway | None = None
    error: str = ""  # the template failed for this person: what the dispatch would record
    email: EmailPreview | None = None
    sms: SmsPreview | None = None
    push: PushPreview | None = None
    chat: ChatPreview | None = None
    notes: list[str] = field(default_factory=list)


def preview_member_find(*, key: str) -> Member:
    """The member a marketer typed: an external id, an email address or an id, in one query.

    Raises ValidationError on `member` when no member has it, or when an email address
    belongs to several members (the external id tells them apart).
    """
    key = key.strip()
    if not key:
        raise ValidationError({"member": "type a member's external id, email address or id"})
    match = Q(external_id=key) | Q(email=key.lower())
    if key.isdigit() and len(key) < 19:
        match |= Q(pk=int(key))
    members = list(Member.objects.filter(match).order_by("pk")[:10])
    for found in members:  # an external id is the member's own key: it wins over the rest
        if found.external_id == key:
            return found
    by_email = [found for found in members if found.email and found.email == key.lower()]
    if len(by_email) > 1:
        raise ValidationError({"member": f"{len(by_email)} members have the email address "
                                         f"{key}; type the external id instead"})
    if by_email:
        return by_email[0]
    if members:
        return members[0]
    raise ValidationError({"member": f"no member with the external id, email address or id "
                                     f"{key!r}"})


def preview_person_of_member(member: Member) -> PreviewPerson:
    values = {path: getattr(member, key) for key, path in MEMBER_VALUE_PATHS.items()}
    return PreviewPerson(context=member_context(values), member_id=member.pk,
                         label=f"member {member}")


def preview_person_of_sample(values: Mapping[str, Any] | None = None) -> PreviewPerson:
    """Sample data: each of SAMPLE_FIELDS as typed, SAMPLE_DEFAULTS where left blank."""
    values = values or {}
    typed = {name: str(values.get(name) or "").strip() or default
             for name, default in SAMPLE_DEFAULTS.items()}
    context = member_context({MEMBER_VALUE_PATHS[name]: value for name, value in typed.items()})
    return PreviewPerson(context=context, label="sample data")


def preview_first_member() -> Member | None:
    """The member a preview shows when none is chosen: the first one (lowest id)."""
    return Member.objects.order_by("pk").first()


def mailing_preview_member(*, mailing: Mailing) -> Member | None:
    """A member of the mailing's audience to preview its message as: once sent, the first
    member it went to; before, the first member of its audience the channel reaches, else
    its first member at all (None without an audience or with an empty one)."""
    sent = (Message.objects.filter(mailing=mailing, is_test=False).order_by("pk")
            .values_list("member_id", flat=True).first())
    if sent is not None:
        return Member.objects.filter(pk=sent).first()
    if not any((mailing.target_group_id, mailing.static_list_id, mailing.member_id)):
        return None
    audience = mailing_audience(mailing=mailing).order_by("pk")
    channel = mailing.template.channel if mailing.template_id else None
    if channel is not None:
        reachable = audience.filter(member_reachable(channel=channel)).first()
        if reachable is not None:
            return reachable
    return audience.first()


def template_preview(*, template: Template, person: PreviewPerson,
                     gateway: Gateway | None = None) -> TemplatePreview:
    """The template as `person` would receive it on its channel (through `gateway`, when
    given: its sender). A template that fails for them gives `error`, not an exception."""
    preview = TemplatePreview(template=template, person=person, gateway=gateway)
    unsubscribe_url = PREVIEW_UNSUBSCRIBE_URL if template.channel == Channel.EMAIL else None
    try:
        compiled = CompiledTemplate(subject=template.subject, body=template.body,
                                    html_body=template.html_body)
        rendered = compiled.render(person.context, unsubscribe_url=unsubscribe_url)
    except Exception as exc:  # noqa: BLE001  (dispatch fails the member's message on any of them)
        preview.error = f"The template fails for {person.label}: {exc}"
        return preview
    channel = template.channel
    if channel == Channel.EMAIL:
        preview.email = _email(rendered.subject, rendered.body, rendered.html_body,
                               gateway=gateway)
        if unsubscribe_url and unsubscribe_url in rendered.body + rendered.html_body:
            preview.notes.append("The unsubscribe link points nowhere in the preview; each "
                                 "member's own link is filled in at send time.")
    elif channel == Channel.SMS:
        preview.sms = _sms(rendered.body, gateway=gateway)
    elif channel == Channel.PUSH:
        preview.push = PushPreview(title=rendered.subject, body=rendered.body,
                                   image_url=template.image_url, link_url=template.link_url,
                                   data=dict(template.push_data or {}))
    else:
        preview.chat = ChatPreview(
            network=Channel(channel).label, sender=_sender(gateway), text=rendered.body,
            image_url=template.image_url, button_text=template.button_text,
            link_url=template.link_url)
    return preview


def _sender(gateway: Gateway | None) -> str:
    if gateway is None:
        return NO_GATEWAY_SENDER
    return gateway.sender or f"({gateway.name}'s default sender)"


def _email(subject: str, text: str, html: str, *, gateway: Gateway | None) -> EmailPreview:
    if gateway is None:
        sender = NO_GATEWAY_SENDER
    else:
        # As email_message_build sends it: a blank sender is Django's DEFAULT_FROM_EMAIL.
        sender = gateway.sender or settings.DEFAULT_FROM_EMAIL
    preheader = email_preheader(html) if html else ""
    snippet = " ".join((preheader or text).split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[:SNIPPET_CHARS - 1].rstrip() + "…"
    return EmailPreview(sender=sender, subject=subject, preheader=preheader, snippet=snippet,
                        html=html, text=text)


def _sms(text: str, *, gateway: Gateway | None) -> SmsPreview:
    parts = sms_parts(text)
    gsm = parts.encoding == "gsm7"
    return SmsPreview(
        sender=_sender(gateway), text=text, characters=len(text),
        encoding=ENCODING_LABELS[parts.encoding], units=parts.units, segments=parts.segments,
        single_limit=GSM7_SINGLE if gsm else UCS2_SINGLE,
        part_limit=GSM7_PART if gsm else UCS2_PART, parts=parts.parts)


class _PreheaderParser(HTMLParser):
    """Finds the preheader: an element hidden with display:none in the body before any
    visible text (what MJML's <mj-preview> writes and what hand-written emails use)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.depth = 0  # open elements inside the hidden one
        self.text: list[str] = []
        self.done = False
        self._skip = 0  # inside <style>/<script>/<title>: not visible text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.in_body = True
            return
        if tag in ("style", "script", "title"):
            self._skip += 1
            return
        if self.depth:
            self.depth += 1
            return
        style = "".join((dict(attrs).get("style") or "").split()).lower()
        if self.in_body and "display:none" in style:
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip = max(0, self._skip - 1)
            return
        if self.depth:
            self.depth -= 1
            if not self.depth:
                self.done = True

    def handle_data(self, data: str) -> None:
        if self.done or self._skip or not self.in_body:
            return
        if self.depth:
            self.text.append(data)
        elif data.strip():
            self.done = True  # visible text came first: there is no preheader


def email_preheader(html: str) -> str:
    """The email's preheader text ('' when it has none)."""
    parser = _PreheaderParser()
    parser.feed(html)
    parser.close()
    # Preheaders are padded with invisible characters (&zwnj;, &nbsp;) to push the body's
    # text out of the inbox line; they are not part of what the reader sees.
    text = "".join(parser.text).replace("\u200c", " ").replace("\u00a0", " ")
    return " ".join(text.split())


def preview_mailings(*, template: Template) -> QuerySet[Mailing]:
    """The mailings that send `template`: as their own template or as a cascade step's."""
    return (Mailing.objects.filter(Q(template=template) | Q(cascade_steps__template=template))
            .distinct())


def mailing_template_gateway(*, mailing: Mailing, template: Template) -> Gateway | None:
    """The gateway the mailing sends `template` through: its own, or its cascade step's."""
    if mailing.template_id == template.pk:
        return mailing.gateway
    step = (mailing.cascade_steps.filter(template=template).select_related("gateway")
            .order_by("position").first())
    return step.gateway if step is not None else None
