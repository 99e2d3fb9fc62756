"""Transactional messages: one member, one message, sent now (confirmations, sign-in codes).

They are not marketing: no consent or frequency rules apply, only the suppression list (a
hard-bounced address stays dead). Each is a Message row without a mailing, claimed before it
is sent like any other, so a retried task never sends it twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from communications import tasks
from communications.gateways import OutboundMessage
from communications.models import Gateway, Message
from communications.services import gateway_send, messages_record_results
from members import hooks
from members.models import Channel, FeedbackMessage, FeedbackThread, Member, Suppression
from members.services.double_opt_in import email_confirmation_url
from members.services.feedback import feedback_thread_url

Status = Message.Status
# A member who asks again within this time does not get a second confirmation.
CONFIRMATION_RESEND_AFTER = timedelta(minutes=10)
CONFIRMATION_SUBJECT = "Please confirm your email address"
SIGN_IN_SUBJECT = _("Your sign-in code")
FEEDBACK_ANSWERED_SUBJECT = _("Support has answered your message")


def transactional_gateway(*, channel: str) -> Gateway:
    gateways = Gateway.objects.filter(channel=channel, is_active=True).order_by("pk")
    if channel == Channel.EMAIL and settings.ENGAGE_TRANSACTIONAL_EMAIL_GATEWAY:
        gateways = gateways.filter(name=settings.ENGAGE_TRANSACTIONAL_EMAIL_GATEWAY)
    gateway = gateways.first()
    if gateway is None:
        raise ImproperlyConfigured(f"no active {channel} gateway for transactional messages")
    return gateway


def transactional_message_create(*, member: Member, channel: str, address: str, kind: str,
                                 subject: str, body: str) -> Message:
    """Record one transactional message and send it after commit."""
    now = timezone.now()
    suppressed = Suppression.objects.filter(channel=channel, address=address).exists()
    message = Message.objects.create(
        mailing=None, member=member, channel=channel, address=address,
        status=Status.SKIPPED if suppressed else Status.QUEUED,
        skip_reason=Message.SkipReason.SUPPRESSED if suppressed else "",
        content={"kind": kind, "subject": subject, "body": body}, created_at=now,
        updated_at=now,
    )
    if not suppressed:
        transaction.on_commit(lambda: tasks.send_transactional_message.delay(message.pk))
    return message


MISSING = "missing"


def transactional_message_send(*, message_id: int) -> str:
    """Claim, send and record one transactional message; returns its final status, or
    MISSING when the message is gone (its member was erased before the task ran)."""
    now = timezone.now()
    claimed = Message.objects.filter(
        pk=message_id, mailing__isnull=True, status=Status.QUEUED
    ).update(status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1,
             updated_at=now)
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return MISSING
    if not claimed:
        return message.status
    try:
        gateway = transactional_gateway(channel=message.channel)
    except ImproperlyConfigured as exc:
        Message.objects.filter(pk=message_id).update(
            status=Status.FAILED, error_code="no_gateway", error=str(exc),
            updated_at=timezone.now())
        return Status.FAILED
    content = message.content or {}
    results = gateway_send(gateway=gateway, batch=[OutboundMessage(
        message_id=message.pk, address=message.address, subject=content.get("subject", ""),
        body=content.get("body", ""),
    )])
    messages_record_results(results=results, attempts={message.pk: message.attempts},
                            gateway_id=gateway.pk)
    return Message.objects.values_list("status", flat=True).get(pk=message_id)


def email_confirmation_send(member_id: int) -> Message | None:
    """The double opt-in confirmation for a member's current email (hooked to members)."""
    member = Member.objects.filter(pk=member_id, status=Member.Status.ACTIVE).first()
    if member is None or not member.email or member.email_verified_at is not None:
        return None
    recent = Message.objects.filter(
        member=member, mailing__isnull=True, channel=Channel.EMAIL, address=member.email,
        content__kind="email_confirmation",
        created_at__gte=timezone.now() - CONFIRMATION_RESEND_AFTER,
    ).exclude(status__in=[Status.FAILED, Status.SKIPPED])
    if recent.exists():
        return None
    body = render_to_string("members/email_confirmation.txt", {
        "member": member, "confirmation_url": email_confirmation_url(member=member),
        "max_age_days": settings.ENGAGE_EMAIL_CONFIRMATION_MAX_AGE // 86400,
    })
    with transaction.atomic():
        return transactional_message_create(
            member=member, channel=Channel.EMAIL, address=member.email,
            kind="email_confirmation", subject=CONFIRMATION_SUBJECT, body=body,
        )


hooks.EMAIL_CONFIRMATION_REQUESTED.append(email_confirmation_send)


def sign_in_code_send(member: Member, channel: str, address: str, code: str) -> Message:
    """A member's sign-in code, in their language, to the address they typed (hooked to
    members' sign-in)."""
    with translation.override(member.language or settings.LANGUAGE_CODE):
        context = {"member": member, "code": code,
                   "minutes": int(settings.ENGAGE_SIGN_IN_CODE_TTL.total_seconds() // 60)}
        body = render_to_string("members/sign_in_code.txt", context).strip()
        subject = str(SIGN_IN_SUBJECT) if channel == Channel.EMAIL else ""
    return transactional_message_create(member=member, channel=channel, address=address,
                                        kind="sign_in_code", subject=subject, body=body)


hooks.SIGN_IN_CODE_REQUESTED.append(sign_in_code_send)


def feedback_answered_send(thread: FeedbackThread, message: FeedbackMessage) -> Message | None:
    """Tell a member support answered their feedback (hooked to members' feedback): by email
    if they have an address, else by SMS, in their language, with a link to the thread."""
    member = thread.member
    if member.status != Member.Status.ACTIVE:
        return None
    if member.email:
        channel, address = Channel.EMAIL, member.email
    elif member.phone:
        channel, address = Channel.SMS, member.phone
    else:
        return None
    with translation.override(member.language or settings.LANGUAGE_CODE):
        body = render_to_string("members/feedback_answered.txt", {
            "program_name": settings.ENGAGE_PROGRAM_NAME, "topic": thread.get_topic_display(),
            "thread_url": feedback_thread_url(thread=thread),
        }).strip()
        subject = str(FEEDBACK_ANSWERED_SUBJECT) if channel == Channel.EMAIL else ""
    return transactional_message_create(member=member, channel=channel, address=address,
                                        kind="feedback_answered", subject=subject, body=body)


hooks.FEEDBACK_ANSWERED.append(feedback_answered_send)
