"""The MIME email an email gateway sends for one outbound message."""

from __future__ import annotations

from django.core.mail import EmailMultiAlternatives

from communications.gateways.base import OutboundMessage


def email_message_build(outbound: OutboundMessage, *, sender: str,
                        message_id: str) -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(
        subject=outbound.subject, body=outbound.body, from_email=sender or None,
        to=[outbound.address], headers={"Message-ID": message_id, **outbound.headers},
    )
    if outbound.html_body:
        email.attach_alternative(outbound.html_body, "text/html")
    return email
