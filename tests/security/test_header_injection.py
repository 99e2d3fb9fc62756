"""Member names reach the email's headers (a subject with placeholders), so a name with line
breaks must not add headers: the email a real SMTP server receives has exactly the headers
Engage meant, for the one recipient meant. SMS and push bodies carry the name as it is."""

from __future__ import annotations

import email
import email.policy

import pytest

from communications.gateways.base import OutboundMessage
from communications.gateways.email_message import email_message_build
from communications.models import Message
from communications.renderers import CompiledTemplate, member_context
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import consenting_member

INJECTED = "victim@evil.example"
# (first name, last name) as a member import or the app's profile call could store them.
HOSTILE_NAMES = [
    (f"Eve\r\nBcc: {INJECTED}", "Smith"),
    (f"Eve\nBcc: {INJECTED}", "Smith"),
    (f"Eve\rBcc: {INJECTED}", "Smith"),
    ("Eve", f"Smith\r\nCc: {INJECTED}"),
    ("Eve\r\n\r\n<b>a body of our own</b>", "Smith"),
    (f"Eve\u2028Bcc: {INJECTED}", "Smith"),
    (f"Eve\u2029To: {INJECTED}", "Smith"),
    (f"Eve\x85Reply-To: {INJECTED}", "Smith"),
    ("Eve\x0bX-Injected: 1", "Smith\x0cX-Injected: 2"),
    ("Eve\x1cX-Injected: 1", "Smith\x1e"),
    ("Eve", "Smith\r\nContent-Type: text/html; charset=utf-8"),
    (f"=?utf-8?q?Eve=0D=0ABcc:_{INJECTED}?=", "Smith"),
    ("Eve%0d%0aBcc:%20victim@evil.example", "Smith"),
    (f"\u0415\u0432\u0430\r\nBcc: {INJECTED}", "\u0418\u0432\u0430\u043d\u043e\u0432\u0430"),
    ("E" * 100, "S" * 100),
    (("Eve " * 25).strip(), ("\r\nBcc: x@evil.example" * 4)[:100]),
]
SUBJECT = "Hello {{ member.first_name }} {{ member.last_name }}, your offer"


def _received_by_member(smtp_peer, names):
    """Dispatch one email mailing to a member per name pair; {member: received email}."""
    members = [consenting_member(first_name=first, last_name=last) for first, last in names]
    mailing = MailingFactory(
        gateway=GatewayFactory(settings=smtp_peer.gateway_settings()),
        template=TemplateFactory(subject=SUBJECT,
                                 body="Dear {{ member.full_name }}",
                                 html_body="<p>Dear {{ member.first_name }}</p>"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=len(members) + 1)
    assert sorted(Message.objects.filter(mailing=mailing).values_list("status", flat=True)) \
        == ["sent"] * len(members)
    by_address = {received.rcpt_tos[0]: received for received in smtp_peer.handler.received}
    return {member: by_address[member.email] for member in members}


@pytest.mark.django_db
def test_hostile_names_add_no_header_and_no_recipient(smtp_peer):
    # given: a member with a plain name shows the headers Engage means to send
    plain, *hostile = _received_by_member(smtp_peer, [("Ann", "Lee"), *HOSTILE_NAMES]).items()
    intended = sorted(plain[1].message.keys())
    assert {"Subject", "From", "To", "Message-ID", "List-Unsubscribe"} <= set(intended)

    # then: every hostile name's email has exactly those headers, to its one recipient
    wrong = {}
    for member, received in hostile:
        message = received.message
        if (sorted(message.keys()) != intended or received.rcpt_tos != [member.email]
                or INJECTED in str(message["To"]) or message["Bcc"] or message["Cc"]
                or any(c in str(message["Subject"]) for c in "\r\n\u2028\u2029\x85")):
            wrong[member.first_name] = (sorted(message.keys()), received.rcpt_tos,
                                        str(message["Subject"]))
    assert wrong == {}


@pytest.mark.django_db
def test_the_subject_keeps_the_name_on_one_line(smtp_peer):
    received = _received_by_member(smtp_peer, [(f"Eve\r\nBcc: {INJECTED}", "Smith")])

    [(_, mail)] = received.items()
    assert str(mail.message["Subject"]) == f"Hello Eve Bcc: {INJECTED} Smith, your offer"


@pytest.mark.django_db
def test_a_very_long_name_is_folded_not_cut_and_adds_no_header(smtp_peer):
    received = _received_by_member(smtp_peer, [("Bartholomew" * 9, "Montgomery-Smythe" * 5)])

    [(member, mail)] = received.items()
    assert str(mail.message["Subject"]) == (f"Hello {member.first_name} {member.last_name}, "
                                            "your offer")
    assert mail.message["Bcc"] is None


def _built_headers(outbound: OutboundMessage) -> email.message.EmailMessage:
    raw = email_message_build(outbound, sender="Club <club@engage.example.com>",
                              message_id="<1@engage.example.com>").message().as_bytes(
        linesep="\r\n")
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.parametrize("first, last", HOSTILE_NAMES)
def test_the_email_builder_makes_a_raw_subject_one_line(first, last):
    # A subject from any producer (not only the renderer, which already collapses whitespace).
    built = _built_headers(OutboundMessage(message_id=1, address="ann@example.com",
                                           subject=f"Hello {first} {last}", body="x"))

    assert sorted(built.keys()) == ["Content-Transfer-Encoding", "Content-Type", "Date", "From",
                                    "MIME-Version", "Message-ID", "Subject", "To"]
    assert built["To"] == "ann@example.com"


def test_the_email_builder_makes_extra_header_values_one_line():
    built = _built_headers(OutboundMessage(
        message_id=1, address="ann@example.com", subject="Hi", body="x",
        headers={"List-Unsubscribe": f"<https://e.example/u/1/>\r\nBcc: {INJECTED}"}))

    assert built["Bcc"] is None
    assert built["List-Unsubscribe"] == f"<https://e.example/u/1/> Bcc: {INJECTED}"


@pytest.mark.parametrize("first, last", HOSTILE_NAMES[:6])
def test_sms_and_push_bodies_carry_the_name_as_it_is(first, last):
    # Not headers: a text body keeps what the member wrote, line breaks included.
    template = CompiledTemplate(subject="{{ member.first_name }}",
                                body="Hi {{ member.first_name }} {{ member.last_name }}")

    rendered = template.render(member_context({"member__first_name": first,
                                               "member__last_name": last}))

    assert rendered.body == f"Hi {first} {last}"


@pytest.mark.django_db
def test_an_encoded_word_typed_as_a_name_is_shown_as_typed(smtp_peer):
    name = f"=?utf-8?q?Eve=0D=0ABcc:_{INJECTED}?="
    received = _received_by_member(smtp_peer, [(name, "Smith")])

    [(_, mail)] = received.items()
    assert str(mail.message["Subject"]) == f"Hello {name} Smith, your offer"
