"""Shared steps of the mailing scenarios: build a mailing, run it to the end, clear it away.

Everything goes through the services a marketer's actions go through (`mailing_schedule`,
`mailing_start_now`, `mailing_prepare`); only the bench's own cleanup touches tables directly.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.models import Count

from bench.database import table_truncate
from campaigns.models import TargetGroup
from communications.models import Gateway, Mailing, Message, Template
from communications.services import mailing_start_now
from members.models import Member
from members.selectors import marketing_consent_granted

# A typical marketing email: personalized subject, text and HTML parts.
SUBJECT = "{{ member.first_name }}, your points are waiting"
BODY = (
    "Dear {{ member.full_name }},\n\n"
    "as a member ({{ member.external_id }}) you collect points on every order.\n"
    "This week they count double in every shop and online.\n\n"
    "Your Engage Club\n"
)
HTML_BODY = (
    "<html><body><p>Dear {{ member.full_name }},</p>"
    "<p>as a member (<b>{{ member.external_id }}</b>) you collect points on every order.</p>"
    "<p>This week they count <b>double</b> in every shop and online.</p>"
    "<p>Your Engage Club</p></body></html>"
)
FINAL_STATES = (Mailing.State.COMPLETED, Mailing.State.CANCELLED, Mailing.State.FAILED)


def mailing_create(*, name: str, rules: list[dict[str, Any]],
                   gateway_settings: dict[str, Any]) -> Mailing:
    """A draft email mailing to the target group `rules`, through an SMTP gateway."""
    gateway, _ = Gateway.objects.update_or_create(
        name="bench smtp", defaults={
            "channel": "email", "provider": "smtp", "settings": gateway_settings,
            "sender": "Engage Club <club@engage.example.com>", "is_active": True,
        },
    )
    template, _ = Template.objects.update_or_create(
        name="bench points", defaults={
            "channel": "email", "language": "en", "subject": SUBJECT, "body": BODY,
            "html_body": HTML_BODY,
        },
    )
    target_group, _ = TargetGroup.objects.update_or_create(name=name, defaults={"rules": rules})
    return Mailing.objects.create(name=name, target_group=target_group, template=template,
                                  gateway=gateway)


def first_members_rules(count: int, *, consenting: bool) -> list[dict[str, Any]]:
    """Rules selecting the `count` earliest-joined members (with email consent if `consenting`).

    The rule engine has no "first N" or id-list rule fit for 100k members, so the group is a
    `created_at` range ending at the `count`-th such member (the demo's join times are whole
    seconds, so a tie on the cutoff may add one or two); when fewer exist, all of them.
    """
    members = Member.objects.order_by("created_at", "pk")
    rules: list[dict[str, Any]] = []
    if consenting:
        members = members.filter(marketing_consent_granted(channel="email")).exclude(email="")
        rules.append({"field": "reachable", "op": "reachable", "value": "email"})
    joined = members.values_list("created_at", flat=True)
    cutoff = next(iter(joined[count - 1:count]), None) or joined.last()
    if cutoff is None:
        raise RuntimeError("no member to send to: is the bench database seeded?")
    return [*rules, {"field": "created_at", "op": "range", "value": [None, cutoff.isoformat()]}]


def messages_by_status(mailing: Mailing) -> dict[str, int]:
    rows = (Message.objects.filter(mailing=mailing).values("status")
            .annotate(count=Count("pk")).order_by())
    return {row["status"]: row["count"] for row in rows}


def mailing_run_until_completed(mailing: Mailing, *, timeout: float) -> float:
    """Start the mailing now and wait for it to end; seconds from start to `completed_at`.

    The workers do everything from here: snapshot, batches, completion. Raises when the mailing
    ends in any other state, or does not end within `timeout`.
    """
    started = time.time()
    mailing_start_now(mailing=mailing)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, completed_at = Mailing.objects.filter(pk=mailing.pk).values_list(
            "state", "completed_at").get()
        if state in FINAL_STATES:
            if state != Mailing.State.COMPLETED:
                mailing.refresh_from_db()
                reason = getattr(mailing, "failure_reason", "")  # newer schema says why
                raise RuntimeError(f"mailing {mailing.pk} ended {state} {reason!r}: "
                                   f"{messages_by_status(mailing)}")
            return completed_at.timestamp() - started
        time.sleep(0.2)
    raise RuntimeError(f"mailing {mailing.pk} still {state} after {timeout:.0f} s: "
                       f"{messages_by_status(mailing)}")


def mailings_clear() -> None:
    """Remove every bench mailing and its messages (the bench database is ours alone)."""
    table_truncate(Message)
    Mailing.objects.all().delete()
