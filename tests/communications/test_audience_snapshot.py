from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.selectors import audience_preview
from communications.models import AudiencePart, Mailing, Message
from communications.services import mailing_prepare, mailing_schedule
from members.services import consent_record, suppression_add
from tests.campaigns.factories import TargetGroupFactory
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import (
    ConsentFactory,
    DeviceFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
    consenting_member,
)

pytestmark = pytest.mark.django_db


def _prepare(mailing: Mailing) -> int:
    mailing_schedule(mailing=mailing)
    return mailing_prepare(mailing_id=mailing.pk)


def _statuses(mailing: Mailing) -> dict[int, tuple[str, str]]:
    return {
        m.member_id: (m.status, m.skip_reason) for m in Message.objects.filter(mailing=mailing)
    }


def test_every_member_of_the_target_group_gets_one_message_row():
    members = [consenting_member() for _ in range(3)]
    mailing = MailingFactory()

    written = _prepare(mailing)

    assert written == 3
    assert set(_statuses(mailing)) == {m.pk for m in members}
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING


def test_member_without_consent_is_skipped_as_opted_out():
    member = MemberFactory()
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "opted_out")


def test_member_who_withdrew_consent_is_skipped_as_opted_out():
    member = MemberFactory()
    ConsentFactory(member=member, state="withdrawn")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "opted_out")


def test_sms_consent_does_not_make_a_member_reachable_by_email():
    member = consenting_member(channel="sms")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "opted_out")


def test_consenting_member_without_address_is_skipped_as_no_address():
    member = consenting_member(email="")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "no_address")


def test_consenting_member_with_address_is_queued_with_that_address():
    member = consenting_member()
    mailing = MailingFactory()

    _prepare(mailing)

    message = Message.objects.get(mailing=mailing)
    assert (message.status, message.address) == ("queued", member.email)


def test_only_members_matching_the_target_group_rules_are_included():
    german = consenting_member(language="de")
    consenting_member(language="fr")
    mailing = MailingFactory(
        target_group=TargetGroupFactory(rules=[{"field": "language", "op": "eq", "value": "de"}])
    )

    _prepare(mailing)

    assert set(_statuses(mailing)) == {german.pk}


def test_a_second_start_writes_nothing_more():
    consenting_member()
    mailing = MailingFactory()
    _prepare(mailing)

    again = mailing_prepare(mailing_id=mailing.pk)

    assert again == 0
    assert Message.objects.filter(mailing=mailing).count() == 1


def _message_inserts(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].startswith(f'INSERT INTO "{Message._meta.db_table}"')]


@pytest.mark.parametrize("audience", [3, 30])
def test_snapshot_is_one_insert_whatever_the_audience_size(audience):
    for _ in range(audience):
        consenting_member()
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)

    with CaptureQueriesContext(connection) as queries:
        mailing_prepare(mailing_id=mailing.pk)

    inserts = _message_inserts(queries)
    assert len(inserts) == 1
    assert "SELECT" in inserts[0]
    assert len(queries) <= 30  # savepoints and the cascade lookups included


def test_snapshot_is_one_insert_per_audience_part(settings):
    settings.ENGAGE_AUDIENCE_PART_SIZE = 2
    members = [consenting_member() for _ in range(5)]
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)

    with CaptureQueriesContext(connection) as queries:
        written = mailing_prepare(mailing_id=mailing.pk)

    parts = -(-(members[-1].pk - members[0].pk + 1) // 2)
    assert len(_message_inserts(queries)) == parts
    assert written == 5
    assert set(_statuses(mailing)) == {m.pk for m in members}


def test_a_due_mailing_whose_gateway_was_deactivated_fails_with_the_reason():
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    type(mailing.gateway).objects.filter(pk=mailing.gateway_id).update(is_active=False)

    written = mailing_prepare(mailing_id=mailing.pk)

    mailing.refresh_from_db()
    assert written == 0
    assert mailing.state == Mailing.State.FAILED
    assert mailing.failure_reason == "gateway: this gateway is not active"
    assert not Message.objects.filter(mailing=mailing).exists()


@pytest.mark.parametrize("status", ["blocked", "erased"])
def test_blocked_or_erased_member_is_skipped_as_inactive(status):
    member = consenting_member(status=status)
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "inactive")


def test_member_whose_address_is_suppressed_is_skipped_as_suppressed():
    member = consenting_member(email="bounced@example.com")
    suppression_add(channel="email", address="Bounced@Example.com", reason="hard_bounce")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "suppressed")


def test_suppressing_a_phone_does_not_stop_email():
    member = consenting_member(phone="+4915123456789")
    suppression_add(channel="sms", address="+49 151 23456789", reason="manual")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("queued", "")


def test_member_who_left_a_subscription_category_is_skipped_for_that_category_only():
    news = SubscriptionCategoryFactory(code="news")
    offers = SubscriptionCategoryFactory(code="offers")
    member = consenting_member()
    consent_record(member=member, channel="email", category=news, action="withdraw",
                   source="account_page")
    news_mailing = MailingFactory(category=news)
    offers_mailing = MailingFactory(category=offers)

    _prepare(news_mailing)
    _prepare(offers_mailing)

    assert _statuses(news_mailing)[member.pk] == ("skipped", "not_subscribed_to_category")
    assert _statuses(offers_mailing)[member.pk] == ("queued", "")


def test_member_without_channel_consent_is_opted_out_whatever_their_categories():
    news = SubscriptionCategoryFactory(code="news")
    member = MemberFactory()
    ConsentFactory(member=member, state="withdrawn")
    consent_record(member=member, channel="email", category=news, action="withdraw",
                   source="account_page")
    mailing = MailingFactory(category=news)

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("skipped", "opted_out")


@pytest.mark.parametrize("channel, address", [("email", "shared@example.com"),
                                              ("sms", "+4915123456789")])
def test_members_sharing_an_address_get_one_message_the_lowest_member_id(channel, address):
    field = {"email": "email", "sms": "phone"}[channel]
    first, second, third = (consenting_member(channel=channel, **{field: address})
                            for _ in range(3))
    other = consenting_member(channel=channel)
    mailing = MailingFactory(template=TemplateFactory(channel=channel, subject=""),
                             gateway=GatewayFactory(channel=channel, provider="file_sink"))

    _prepare(mailing)

    assert _statuses(mailing) == {first.pk: ("queued", ""),
                                  second.pk: ("skipped", "duplicate_address"),
                                  third.pk: ("skipped", "duplicate_address"),
                                  other.pk: ("queued", "")}


def test_a_shared_address_is_skipped_when_its_holders_fall_in_different_audience_parts(
        settings):
    settings.ENGAGE_AUDIENCE_PART_SIZE = 2
    first = consenting_member(email="family@example.com")
    between = [consenting_member() for _ in range(4)]
    last = consenting_member(email="family@example.com")
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)

    mailing_prepare(mailing_id=mailing.pk)

    assert AudiencePart.objects.filter(mailing=mailing).count() >= 3
    statuses = _statuses(mailing)
    assert (statuses[first.pk], statuses[last.pk]) == (("queued", ""),
                                                       ("skipped", "duplicate_address"))
    assert {statuses[m.pk] for m in between} == {("queued", "")}


def test_a_shared_address_goes_to_the_holder_who_may_have_it_when_a_lower_one_may_not():
    opted_out = MemberFactory(email="family@example.com")
    reachable = consenting_member(email="family@example.com")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing) == {opted_out.pk: ("skipped", "opted_out"),
                                  reachable.pk: ("queued", "")}


def test_a_shared_address_in_another_mailing_does_not_count():
    member = consenting_member(email="family@example.com")
    other = MailingFactory()
    MessageFactory(mailing=other, member=MemberFactory(), address="family@example.com")
    mailing = MailingFactory()

    _prepare(mailing)

    assert _statuses(mailing)[member.pk] == ("queued", "")


def test_duplicate_addresses_are_skipped_in_one_update_whatever_the_audience_size():
    for _ in range(6):
        consenting_member(email="shared@example.com")
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)

    with CaptureQueriesContext(connection) as queries:
        mailing_prepare(mailing_id=mailing.pk)

    updates = [q["sql"] for q in queries
               if q["sql"].startswith(f'UPDATE "{Message._meta.db_table}"')]
    assert len(updates) == 1
    assert Message.objects.filter(mailing=mailing, skip_reason="duplicate_address").count() == 5


def test_snapshot_stays_one_statement_with_every_compliance_rule(settings):
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = True
    for _ in range(5):
        consenting_member()
    mailing = MailingFactory(category=SubscriptionCategoryFactory())
    mailing_schedule(mailing=mailing)

    with CaptureQueriesContext(connection) as queries:
        mailing_prepare(mailing_id=mailing.pk)

    assert len(_message_inserts(queries)) == 1


@pytest.mark.parametrize("double_opt_in", [False, True])
def test_snapshot_queues_exactly_the_members_the_preview_counts_as_reachable(
        settings, double_opt_in):
    # The snapshot's skip reasons and the preview's "reachable" state the same law in two
    # queries; on members in every state they must agree.
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = double_opt_in
    consenting_member()
    consenting_member(email_verified_at=timezone.now())
    consenting_member(email="")
    consenting_member(status="blocked")
    suppressed = consenting_member()
    suppression_add(channel="email", address=suppressed.email, reason="hard_bounce")
    MemberFactory()
    ConsentFactory(member=MemberFactory(), state="withdrawn")
    mailing = MailingFactory()

    _prepare(mailing)

    queued = Message.objects.filter(mailing=mailing, status="queued").count()
    assert queued == audience_preview(tree={}).reachable["email"]
    assert queued == (1 if double_opt_in else 2)


def test_push_snapshot_queues_exactly_the_members_the_preview_counts_as_reachable():
    recent = timezone.now()
    consenting_member(channel="push")  # no device
    DeviceFactory(member=consenting_member(channel="push"), last_seen_at=recent)
    two_devices = consenting_member(channel="push")
    DeviceFactory(member=two_devices, last_seen_at=recent)
    DeviceFactory(member=two_devices, last_seen_at=None)
    DeviceFactory(member=consenting_member(channel="push"), is_active=False)
    DeviceFactory(member=consenting_member(channel="push", status="blocked"))
    DeviceFactory(member=consenting_member(channel="email"))
    DeviceFactory(member=MemberFactory())
    mailing = MailingFactory(template=TemplateFactory(channel="push", subject=""),
                             gateway=GatewayFactory(channel="push", provider="file_sink"))

    _prepare(mailing)

    queued = Message.objects.filter(mailing=mailing, status="queued").count()
    assert queued == audience_preview(tree={}).reachable["push"]
    assert queued == 2
