"""The MIME email an email gateway sends for one outbound message."""

from __future__ import annotations

import re
from email.header import Header

from django.core.mail import EmailMultiAlternatives

from communications.gateways.base import OutboundMessage

# What may end a line somewhere between here and a mail reader: CR and LF (a header injection:
# "Bcc: ..." on a line of its own), and the other characters str.splitlines() breaks at
# (vertical tab, form feed, file/group/record separators, NEL, Unicode line and paragraph
# separators), which some mail software treats as line ends too. Subjects carry member names
# (a template's placeholders), so a header value is made one line here, whoever built it.
_LINE_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def header_value_one_line(value: str) -> str:
    """`value` with every line break replaced by a space."""
    return _LINE_BREAKS.sub(" ", value).strip()


def subject_encoded_words_literal(subject: str) -> str:
    """`subject`, with any RFC 2047 encoded-word in it (`=?utf-8?q?Eve=0D=0ABcc:...?=`, typed
    as a member's name) kept as the literal text it is: a mail reader would otherwise decode it
    into the displayed subject, line breaks and all. The whole subject is then sent as encoded
    words of its own, short ones, which readers join back without the spaces between them and
    which the message can fold at those spaces."""
    if "=?" not in subject:
        return subject
    return " ".join(Header(subject[i:i + 20], "utf-8").encode(maxlinelen=0)
                    for i in range(0, len(subject), 20))


def email_message_build(outbound: OutboundMessage, *, sender: str,
                        message_id: str) -> EmailMultiAlternatives:
    headers = {name: header_value_one_line(value)
               for name, value in {"Message-ID": message_id, **outbound.headers}.items()}
    subject = subject_encoded_words_literal(header_value_one_line(outbound.subject))
    email = EmailMultiAlternatives(
        subject=subject, body=outbound.body, from_email=sender or None, to=[outbound.address],
        headers=headers,
    )
    if outbound.html_body:
        email.attach_alternative(outbound.html_body, "text/html")
    return email
