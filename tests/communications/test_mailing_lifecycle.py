"""Preparing in parts, pause, resume and cancel: each transition by a service, with its rules."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from communications.models import AudiencePart, Mailing, Message
from communications.services import (
    audience_parts_freeze,
    mailing_cancel,
    mailing_pause,
    mailing_prepare,
    mailing_resume,
    mailing_schedule,
    mailings_tick,
    message_batch_dispatch,
)
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db
State = Mailing.State


def _state(mailing: Mailing) -> str:
    mailing.refresh_from_db()
    return mailing.state


def _sending(*, members: int, gateway_settings: dict | None = None) -> Mailing:
    for _ in range(members):
        consenting_member()
    gateway = GatewayFactory(**({"settings": gateway_settings} if gateway_settings else {}))
    mailing = mailing_schedule(mailing=MailingFactory(gateway=gateway))
    mailing_prepare(mailing_id=mailing.pk)
    return mailing


def test_a_started_mailing_is_cut_into_parts_of_member_ids(settings):
    settings.ENGAGE_AUDIENCE_PART_SIZE = 2
    members = [consenting_member() for _ in range(5)]
    mailing = mailing_schedule(mailing=MailingFactory())

    mailing_prepare(mailing_id=mailing.pk)

    parts = list(AudiencePart.objects.filter(mailing=mailing).order_by("first_member_id"))
    assert parts[0].first_member_id <= members[0].pk
    assert parts[-1].last_member_id >= members[-1].pk
    assert all(p.last_member_id - p.first_member_id == 1 for p in parts[:-1])
    assert all(p.done_at is not None for p in parts)
    assert sum(p.written for p in parts) == 5


def test_the_mailing_sends_once_every_part_is_frozen(settings):
    settings.ENGAGE_AUDIENCE_PART_SIZE = 2
    mailing = _sending(members=3)

    assert _state(mailing) == State.SENDING


def test_a_frozen_part_is_not_frozen_again():
    mailing = _sending(members=2)

    assert audience_parts_freeze(mailing_id=mailing.pk) == 0
    assert Message.objects.filter(mailing=mailing).count() == 2


def test_a_preparing_mailing_whose_last_freezer_died_starts_sending_at_the_next_tick():
    mailing = _sending(members=2)
    # The last part committed, then its worker died before the state change.
    Mailing.objects.filter(pk=mailing.pk).update(state=State.PREPARING)

    result = mailings_tick()

    assert result["preparing"] == [mailing.pk]
    assert _state(mailing) == State.SENDING


def test_parts_of_a_cancelled_mailing_write_nothing(settings):
    settings.ENGAGE_AUDIENCE_PART_SIZE = 1
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    Mailing.objects.filter(pk=mailing.pk).update(state=State.PREPARING)
    AudiencePart.objects.create(mailing=mailing, first_member_id=0, last_member_id=10**9)

    mailing_cancel(mailing=mailing)
    written = audience_parts_freeze(mailing_id=mailing.pk)

    assert written == 0
    assert not Message.objects.filter(mailing=mailing).exists()
    assert _state(mailing) == State.CANCELLED


def test_a_paused_mailing_claims_nothing():
    mailing = _sending(members=2)

    mailing_pause(mailing=mailing)
    result = message_batch_dispatch(mailing_id=mailing.pk)

    assert result == {"claimed": 0}
    assert set(Message.objects.filter(mailing=mailing).values_list("status", flat=True)) == {
        "queued"}
    assert _state(mailing) == State.PAUSED


def test_resume_sends_only_what_was_not_sent_before_the_pause(smtp_peer):
    mailing = _sending(members=4, gateway_settings=smtp_peer.gateway_settings())
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=2)
    mailing_pause(mailing=mailing)

    mailing_resume(mailing=mailing)
    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    recipients = [r.rcpt_tos[0] for r in smtp_peer.received]
    assert len(recipients) == len(set(recipients)) == 4
    assert _state(mailing) == State.COMPLETED


@pytest.mark.parametrize("state", [State.DRAFT, State.SCHEDULED, State.PAUSED,
                                   State.COMPLETED])
def test_only_a_sending_mailing_can_be_paused(state):
    mailing = MailingFactory()
    Mailing.objects.filter(pk=mailing.pk).update(state=state)

    with pytest.raises(ValidationError) as error:
        mailing_pause(mailing=mailing)

    assert "only a sending mailing can be paused" in str(error.value)


def test_only_a_paused_mailing_can_be_resumed():
    mailing = _sending(members=1)

    with pytest.raises(ValidationError) as error:
        mailing_resume(mailing=mailing)

    assert "only a paused mailing can be resumed" in str(error.value)


def test_cancelling_a_paused_mailing_cancels_its_unsent_messages():
    mailing = _sending(members=3)
    mailing_pause(mailing=mailing)

    mailing_cancel(mailing=mailing)

    assert set(Message.objects.filter(mailing=mailing).values_list("status", flat=True)) == {
        "cancelled"}
    assert _state(mailing) == State.CANCELLED
