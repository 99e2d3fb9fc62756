"""Consent changes go through the event log (members.hooks.CONSENTS_CHANGED)."""

from __future__ import annotations

import pytest
from django.db import transaction

from loyalty.models import Event
from members.services import consent_record
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_consent_change_writes_consent_changed():
    member = MemberFactory()

    ledger = consent_record(member=member, channel="sms", action="withdraw", source="sms_stop")

    event = Event.objects.get(type=Event.Type.CONSENT_CHANGED)
    assert event.member_id == member.pk
    assert event.occurred_at == ledger.recorded_at
    assert event.payload == {"channel": "sms", "purpose": "marketing", "category": None,
                             "action": "withdraw", "source": "sms_stop",
                             "consent_event_id": ledger.pk}


def test_consent_change_rolled_back_leaves_no_event():
    member = MemberFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        consent_record(member=member, channel="email", action="grant", source="app")
        raise RuntimeError("the consent's transaction fails")

    assert not Event.objects.exists()
