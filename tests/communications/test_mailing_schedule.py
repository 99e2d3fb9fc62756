from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from communications.models import Mailing, Message
from communications.services import mailing_cancel, mailing_prepare, mailing_schedule
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["target_group", "template", "gateway"])
def test_mailing_without_a_required_part_cannot_be_scheduled(field):
    mailing = MailingFactory(**{field: None})

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert field in error.value.message_dict
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.DRAFT


def test_gateway_of_another_channel_is_refused_naming_the_gateway():
    mailing = MailingFactory(gateway=GatewayFactory(channel="sms", provider="file_sink"))

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "sends sms" in error.value.message_dict["gateway"][0]


def test_inactive_gateway_is_refused():
    mailing = MailingFactory(gateway=GatewayFactory(is_active=False))

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "gateway" in error.value.message_dict


def test_scheduling_records_the_time_and_state():
    at = timezone.now() + timedelta(hours=2)

    mailing = mailing_schedule(mailing=MailingFactory(), at=at)

    assert mailing.state == Mailing.State.SCHEDULED
    assert mailing.scheduled_at == at


def test_a_sending_mailing_cannot_be_rescheduled():
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "state" in error.value.message_dict


def test_cancel_ends_unsent_messages_as_cancelled():
    consenting_member()
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)

    mailing = mailing_cancel(mailing=mailing)

    assert mailing.state == Mailing.State.CANCELLED
    assert set(Message.objects.filter(mailing=mailing).values_list("status", flat=True)) == {
        "cancelled"
    }


def test_a_completed_mailing_cannot_be_cancelled():
    mailing = MailingFactory()
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.COMPLETED)

    with pytest.raises(ValidationError):
        mailing_cancel(mailing=mailing)
