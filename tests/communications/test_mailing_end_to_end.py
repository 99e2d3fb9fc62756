"""One real mailing end to end: scheduler, Celery worker on Redis, SMTP server on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services import mailing_schedule
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.conftest import wait_until
from tests.members.factories import ConsentFactory, MemberFactory, consenting_member

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def _completed(mailing: Mailing) -> bool:
    mailing.refresh_from_db()
    return mailing.state == Mailing.State.COMPLETED


def test_due_mailing_reaches_exactly_the_consenting_members_once_each(
    smtp_peer, celery_worker_process
):
    # given
    consenting = [
        consenting_member(first_name=name, last_name="Smith") for name in ("Ann", "Bob", "Cid")
    ]
    refused = consenting_member(first_name="Rex", email="nobody@members.example.com")
    smtp_peer.handler.refuse.add(refused.email)
    no_email = consenting_member(first_name="Noa", email="")
    never_asked = MemberFactory(first_name="Ned")
    withdrawn = MemberFactory(first_name="Wil")
    ConsentFactory(member=withdrawn, channel="email", state="withdrawn")
    mailing = MailingFactory(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))

    # when
    mailing_schedule(mailing=mailing, at=timezone.now() - timedelta(seconds=1))
    wait_until(lambda: _completed(mailing), timeout=60, what="the mailing to complete")

    # then: the SMTP server got one email per consenting member, personalized
    received = {r.rcpt_tos[0]: r.message for r in smtp_peer.received}
    assert sorted(received) == sorted(m.email for m in consenting)
    assert len(smtp_peer.received) == len(consenting)
    for member in consenting:
        email = received[member.email]
        assert email["Subject"] == f"Hello {member.first_name}"
        body = email.get_content()
        assert f"Dear {member.first_name} Smith" in body
        assert member.external_id in body

    # and every message says what became of it
    statuses = {
        m.member_id: (m.status, m.skip_reason)
        for m in Message.objects.filter(mailing=mailing)
    }
    assert statuses == {
        **{m.pk: ("sent", "") for m in consenting},
        refused.pk: ("failed", ""),
        no_email.pk: ("skipped", "no_address"),
        never_asked.pk: ("skipped", "opted_out"),
        withdrawn.pk: ("skipped", "opted_out"),
    }
    failed = Message.objects.get(mailing=mailing, member=refused)
    assert failed.error_code == "550"
    assert "Recipient address rejected" in failed.error
    sent = Message.objects.filter(mailing=mailing, status="sent")
    message_ids = {received[m.address]["Message-ID"] for m in sent}
    assert message_ids == set(sent.values_list("provider_id", flat=True))
