from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from members.models import AuditEntry, Consent, ConsentEvent
from members.selectors import consents_current
from members.services import consent_record, consent_withdraw_all
from tests.members.factories import MemberFactory, SubscriptionCategoryFactory

pytestmark = pytest.mark.django_db


def test_a_grant_is_recorded_in_the_ledger_with_its_evidence_and_becomes_current():
    member = MemberFactory()

    event = consent_record(member=member, channel="email", action="grant", source="app",
                           ip_address="198.51.100.4", user_agent="App/2.1",
                           consent_text="Yes, send me offers by email")

    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.channel, stored.purpose, stored.action, stored.source) == (
        "email", "marketing", "grant", "app")
    assert (stored.ip_address, stored.user_agent, stored.consent_text) == (
        "198.51.100.4", "App/2.1", "Yes, send me offers by email")
    assert consents_current(member=member) == {"email": "granted"}


def test_a_withdrawal_keeps_the_earlier_grant_in_the_ledger():
    member = MemberFactory()
    consent_record(member=member, channel="sms", action="grant", source="import")

    consent_record(member=member, channel="sms", action="withdraw", source="sms_stop")

    assert list(ConsentEvent.objects.filter(member=member).values_list("action", "source")) == [
        ("grant", "import"), ("withdraw", "sms_stop")]
    assert consents_current(member=member) == {"sms": "withdrawn"}


def test_an_older_event_does_not_overturn_a_newer_decision():
    member = MemberFactory()
    consent_record(member=member, channel="email", action="withdraw", source="unsubscribe_link")

    consent_record(member=member, channel="email", action="grant", source="import",
                   at=timezone.now() - timedelta(days=30))

    assert consents_current(member=member) == {"email": "withdrawn"}
    assert ConsentEvent.objects.filter(member=member).count() == 2


def test_a_channel_that_does_not_exist_is_refused_naming_the_channel():
    with pytest.raises(ValidationError) as caught:
        consent_record(member=MemberFactory(), channel="fax", action="grant", source="api")

    assert list(caught.value.message_dict) == ["channel"]
    assert not ConsentEvent.objects.exists()


def test_unknown_source_and_action_are_refused():
    with pytest.raises(ValidationError) as caught:
        consent_record(member=MemberFactory(), channel="email", action="maybe", source="psychic")

    assert set(caught.value.message_dict) == {"action", "source"}


def test_support_change_needs_a_reason_and_an_agent():
    with pytest.raises(ValidationError) as caught:
        consent_record(member=MemberFactory(), channel="email", action="withdraw",
                       source="support")

    assert set(caught.value.message_dict) == {"reason", "actor"}


def test_support_change_is_audited(marketer):
    member = MemberFactory()

    consent_record(member=member, channel="email", action="withdraw", source="support",
                   reason="Asked by phone, ticket 4711", actor=marketer)

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.member_id) == ("consent_change", marketer, member.pk)
    assert entry.detail["reason"] == "Asked by phone, ticket 4711"


def test_category_consent_is_kept_beside_the_channel_consent():
    member = MemberFactory()
    news = SubscriptionCategoryFactory(code="news")
    consent_record(member=member, channel="email", action="grant", source="app")

    consent_record(member=member, channel="email", category=news, action="withdraw",
                   source="account_page")

    assert set(Consent.objects.filter(member=member).values_list("category__code", "state")) == {
        (None, "granted"), ("news", "withdrawn")}


def test_a_category_no_longer_offered_cannot_be_granted():
    retired = SubscriptionCategoryFactory(is_active=False)

    with pytest.raises(ValidationError) as caught:
        consent_record(member=MemberFactory(), channel="email", category=retired,
                       action="grant", source="app")

    assert "category" in caught.value.message_dict


def test_withdraw_all_withdraws_every_granted_channel():
    member = MemberFactory()
    for channel in ("email", "sms", "push"):
        consent_record(member=member, channel=channel, action="grant", source="app")

    events = consent_withdraw_all(member=member, source="unsubscribe_link")

    assert sorted(e.channel for e in events) == ["email", "push", "sms"]
    assert set(consents_current(member=member).values()) == {"withdrawn"}


def test_an_erased_member_cannot_grant_consent():
    with pytest.raises(ValidationError) as caught:
        consent_record(member=MemberFactory(status="erased"), channel="email", action="grant",
                       source="api")

    assert "member" in caught.value.message_dict
