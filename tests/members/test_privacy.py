from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from communications.models import Mailing, Message
from communications.services import mailing_prepare, mailing_schedule
from members import hooks
from members.models import (
    AuditEntry,
    Consent,
    ConsentEvent,
    Device,
    Member,
    MessengerAccount,
    SubscriptionCategory,
)
from members.services import consent_record, member_data_export, member_erase
from tests.communications.factories import MailingFactory
from tests.loyalty.factories import LoyaltyAccountFactory, OrderLineFactory, TierFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@dataclass
class Person:
    """A member whose every personal value is distinctive, so a search can find it anywhere."""

    member: Member
    values: dict[str, str]


def _person(tag: int) -> Person:
    values = {
        "first_name": f"Zorbina{tag}",
        "last_name": f"Quaxley{tag}",
        "email": f"zorbina.{tag}@quaxley.example",
        "phone": f"+4915177{tag:03d}42",
        "external_id": f"EXT-ZQ-{tag}",
        "city": f"Quuxburg{tag}",
        "region": f"Quaxshire{tag}",
        "nickname": f"Zorbster{tag}",
        "device_token": f"fcm-token-zq{tag}-abcdef",
        "messenger_id": f"tg-zq{tag}",
        "ip_address": f"203.0.113.{tag % 250}",
        "user_agent": f"ZorbBrowser/{tag}.7",
    }
    now = timezone.now()
    member = MemberFactory(
        external_id=values["external_id"], first_name=values["first_name"],
        last_name=values["last_name"], email=values["email"], phone=values["phone"],
        city=values["city"], region=values["region"], country="DE", latitude=52.5,
        longitude=13.4, registration_source="shop", gender="female",
        birth_date=now.date().replace(year=1990), email_verified_at=now,
        phone_verified_at=now, custom_attributes={"nickname": values["nickname"]},
    )
    Device.objects.create(member=member, platform="fcm", token=values["device_token"],
                          app="club.engage.app")
    MessengerAccount.objects.create(member=member, network="telegram",
                                    account_id=values["messenger_id"])
    for channel in ("email", "sms"):
        consent_record(member=member, channel=channel, action="grant", source="account_page",
                       ip_address=values["ip_address"], user_agent=values["user_agent"],
                       consent_text=f"Yes, send me offers by {channel}.")
    LoyaltyAccountFactory(member=member, tier=TierFactory(code="gold"), points_balance=1250)
    OrderLineFactory(order__member=member, order__external_id=f"ORD-{tag}",
                     product__sku=f"SKU-{tag}", product__name="Espresso beans",
                     quantity=3, unit_price=Decimal("7.50"), order__total=Decimal("22.50"))
    # A transactional confirmation: no mailing, its rendered content quotes the address.
    Message.objects.create(
        member=member, channel="email", address=values["email"], status="sent",
        content={"subject": "Confirm your address",
                 "body": f"Hello {values['first_name']}, confirm {values['email']}"},
        created_at=now, updated_at=now, sent_at=now,
    )
    return Person(member=member, values=values)


def _mailing_sent_to_everyone(name: str = "Spring offers") -> Mailing:
    mailing = MailingFactory(name=name)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    return mailing


def _bounce(mailing: Mailing, person: Person) -> None:
    # What a gateway's reply leaves on a failed message: the provider's text quotes the address.
    Message.objects.filter(mailing=mailing, member=person.member).update(
        status="failed", error_code="550",
        error=f"550 5.1.1 <{person.values['email']}>: mailbox unknown",
    )


def _admin_changed_messenger_account(person: Person, user) -> None:
    # What the admin writes when a marketer adds a messenger account inline on the member page.
    account = person.member.messenger_accounts.get()
    LogEntry.objects.create(
        user=user, content_type=ContentType.objects.get_for_model(Member),
        object_id=str(person.member.pk), object_repr=str(person.member)[:200],
        action_flag=CHANGE,
        change_message=json.dumps([{"added": {"name": "messenger account",
                                              "object": str(account)}}]),
    )


def _columns_holding(values: list[str]) -> dict[str, list[str]]:
    """{value: ["table.column", ...]} for every text-like column of every public table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'character', 'json', 'jsonb', 'inet', 'cidr') "
            "ORDER BY table_name, column_name"
        )
        columns = cursor.fetchall()
        assert len(columns) > 50, "information_schema returned too few columns to mean anything"
        patterns = [
            "%" + v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            for v in values
        ]
        found: dict[str, list[str]] = {}
        qn = connection.ops.quote_name
        for table, column in columns:
            cursor.execute(
                f"SELECT p.i FROM unnest(%s::text[]) WITH ORDINALITY AS p(pattern, i) "
                f"WHERE EXISTS (SELECT 1 FROM {qn(table)} "
                f"WHERE {qn(column)}::text ILIKE p.pattern)",
                [patterns],
            )
            for (i,) in cursor.fetchall():
                found.setdefault(values[i - 1], []).append(f"{table}.{column}")
    return found


# --- export ---------------------------------------------------------------------------------

@pytest.fixture
def two_people() -> tuple[Person, Person]:
    anna, bert = _person(417), _person(852)
    _mailing_sent_to_everyone("Spring offers")
    return anna, bert


def test_export_profile_holds_every_member_field_and_the_tier(two_people):
    anna, _ = two_people

    export = member_data_export(member=anna.member, by=None)

    profile = export["profile"]
    assert {f.attname for f in Member._meta.concrete_fields} <= set(profile)
    assert profile["external_id"] == anna.values["external_id"]
    assert profile["email"] == anna.values["email"]
    assert profile["custom_attributes"] == {"nickname": anna.values["nickname"]}
    assert parse_datetime(profile["email_verified_at"]) is not None
    assert profile["status"] == "active"
    assert profile["tier"] == "gold"


def test_export_lists_devices_and_messenger_accounts(two_people):
    anna, _ = two_people

    export = member_data_export(member=anna.member, by=None)

    assert [d["token"] for d in export["devices"]] == [anna.values["device_token"]]
    assert [(a["network"], a["account_id"]) for a in export["messenger_accounts"]] == [
        ("telegram", anna.values["messenger_id"])
    ]


def test_export_holds_current_consents_and_the_whole_ledger_with_evidence(two_people):
    anna, _ = two_people
    consent_record(member=anna.member, channel="sms", action="withdraw", source="sms_stop")

    export = member_data_export(member=anna.member, by=None)

    assert {(c["channel"], c["state"]) for c in export["consents"]} == {
        ("email", "granted"), ("sms", "withdrawn")
    }
    history = export["consent_history"]
    assert [(e["channel"], e["action"], e["source"]) for e in history] == [
        ("email", "grant", "account_page"), ("sms", "grant", "account_page"),
        ("sms", "withdraw", "sms_stop"),
    ]
    assert history[0]["ip_address"] == anna.values["ip_address"]
    assert history[0]["user_agent"] == anna.values["user_agent"]
    assert history[0]["consent_text"] == "Yes, send me offers by email."
    assert parse_datetime(history[0]["recorded_at"]) is not None


def test_export_lists_mailing_and_transactional_messages(two_people):
    anna, _ = two_people

    export = member_data_export(member=anna.member, by=None)

    assert sorted((m["mailing_name"], m["channel"], m["address"], m["status"])
                  for m in export["messages"]) == [
        ("Spring offers", "email", anna.values["email"], "queued"),
        ("transactional", "email", anna.values["email"], "sent"),
    ]


def test_export_lists_orders_with_lines_and_the_loyalty_account(two_people):
    anna, _ = two_people

    export = member_data_export(member=anna.member, by=None)

    [order] = export["orders"]
    assert (order["external_id"], order["total"], order["currency"]) == (
        "ORD-417", "22.50", "EUR"
    )
    assert parse_datetime(order["placed_at"]) is not None
    assert order["lines"] == [{"product_sku": "SKU-417", "product_name": "Espresso beans",
                               "quantity": 3, "unit_price": "7.50"}]
    assert export["loyalty_account"]["tier"] == "gold"
    assert export["loyalty_account"]["points_balance"] == 1250


def test_export_holds_nothing_of_another_member(two_people):
    anna, bert = two_people

    text = json.dumps(member_data_export(member=anna.member, by=None))

    assert anna.values["email"] in text
    assert [v for v in bert.values.values() if v in text] == []


def test_export_is_audited_with_section_counts_and_no_personal_data(two_people, marketer):
    anna, _ = two_people

    member_data_export(member=anna.member, by=marketer)

    entry = AuditEntry.objects.get(action=AuditEntry.Action.DATA_EXPORT)
    assert (entry.actor, entry.member_id) == (marketer, anna.member.pk)
    assert entry.detail["sections"]["messages"] == 2
    assert entry.detail["sections"]["consent_history"] == 2
    assert [v for v in anna.values.values() if v in json.dumps(entry.detail)] == []


# --- erasure --------------------------------------------------------------------------------

def test_erasure_blanks_the_profile(two_people):
    anna, _ = two_people

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    member = Member.objects.get(pk=anna.member.pk)
    assert (member.first_name, member.last_name, member.email, member.phone) == ("", "", "", "")
    assert (member.city, member.region, member.country, member.gender) == ("", "", "", "")
    assert (member.birth_date, member.latitude, member.longitude) == (None, None, None)
    assert (member.email_verified_at, member.phone_verified_at) == (None, None)
    assert (member.registration_source, member.custom_attributes) == ("", {})
    assert member.external_id.startswith("erased-")
    assert member.status == Member.Status.ERASED


def test_erasure_deletes_devices_and_messenger_accounts(two_people):
    anna, bert = two_people

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    assert not Device.objects.filter(member=anna.member).exists()
    assert not MessengerAccount.objects.filter(member=anna.member).exists()
    assert Device.objects.filter(member=bert.member).exists()


def test_erasure_keeps_the_consent_withdrawal_proof_without_the_evidence_of_who(two_people):
    anna, _ = two_people

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    events = list(ConsentEvent.objects.filter(member=anna.member))
    withdrawals = [(e.channel, e.source, e.reason) for e in events if e.action == "withdraw"]
    assert sorted(withdrawals) == [("email", "erasure", "GDPR request #1"),
                                   ("sms", "erasure", "GDPR request #1")]
    assert [(e.ip_address, e.user_agent) for e in events] == [(None, "")] * 4
    assert {e.consent_text for e in events if e.action == "grant"} == {
        "Yes, send me offers by email.", "Yes, send me offers by sms."
    }
    assert set(Consent.objects.filter(member=anna.member).values_list("state", flat=True)) == {
        "withdrawn"
    }


def test_erasure_also_withdraws_service_and_category_consent(two_people):
    anna, _ = two_people
    news = SubscriptionCategory.objects.create(code="news", name="News")
    consent_record(member=anna.member, channel="email", action="grant", source="app",
                   category=news)
    consent_record(member=anna.member, channel="sms", purpose="service", action="grant",
                   source="app")

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    assert not Consent.objects.filter(member=anna.member, state="granted").exists()
    assert ConsentEvent.objects.filter(member=anna.member, action="withdraw",
                                       source="erasure").count() == 4


def test_erasure_keeps_message_counts_per_status_for_the_mailing(two_people):
    anna, _ = two_people
    mailing = Mailing.objects.get(name="Spring offers")
    _bounce(mailing, anna)

    def counts() -> dict[str, int]:
        return dict(Message.objects.filter(mailing=mailing).values_list("status")
                    .annotate(n=Count("id")).values_list("status", "n"))

    before = counts()
    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    assert before["failed"] == 1
    assert counts() == before


def test_erasure_anonymizes_transactional_messages_too(two_people):
    anna, _ = two_people

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    transactional = Message.objects.get(member=anna.member, mailing=None)
    assert (transactional.address, transactional.content, transactional.status) == (
        "", None, "sent"
    )
    assert transactional.sent_at is not None


def test_erasing_an_erased_member_is_refused(two_people):
    anna, _ = two_people
    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    with pytest.raises(ValidationError) as refused:
        member_erase(member=anna.member, by=None, reason="again")

    assert "member" in refused.value.message_dict
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ERASURE).count() == 1


def test_erasure_without_a_reason_is_refused_and_changes_nothing(two_people):
    anna, _ = two_people

    with pytest.raises(ValidationError) as refused:
        member_erase(member=anna.member, by=None, reason="   ")

    assert "reason" in refused.value.message_dict
    assert Member.objects.get(pk=anna.member.pk).email == anna.values["email"]


def test_erasure_is_audited_with_counts_and_no_personal_data(two_people, marketer):
    anna, _ = two_people

    member_erase(member=anna.member, by=marketer, reason="GDPR request #1")

    entry = AuditEntry.objects.get(action=AuditEntry.Action.ERASURE)
    assert (entry.actor, entry.member_id) == (marketer, anna.member.pk)
    assert entry.detail["reason"] == "GDPR request #1"
    assert entry.detail["consents_withdrawn"] == 2
    assert entry.detail["messages_anonymized"] == 2
    assert entry.detail["devices_deleted"] == 1
    assert [v for v in anna.values.values() if v in json.dumps(entry.detail)] == []


def test_erased_member_is_skipped_by_the_next_mailing_as_inactive(two_people):
    anna, _ = two_people
    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    mailing = _mailing_sent_to_everyone("Summer offers")

    message = Message.objects.get(mailing=mailing, member=anna.member)
    assert (message.status, message.skip_reason) == ("skipped", "inactive")


def test_a_failure_inside_erasure_rolls_everything_back(two_people, monkeypatch):
    anna, _ = two_people

    def failing_handler(member: Member) -> None:
        raise RuntimeError("another app could not anonymize its data")

    # Runs after every real handler, so their writes are in the transaction that must roll back.
    monkeypatch.setattr(hooks, "MEMBER_ERASE", [*hooks.MEMBER_ERASE, failing_handler])

    with pytest.raises(RuntimeError):
        member_erase(member=anna.member, by=None, reason="GDPR request #1")

    member = Member.objects.get(pk=anna.member.pk)
    assert (member.status, member.email) == ("active", anna.values["email"])
    assert Device.objects.filter(member=member).exists()
    assert Message.objects.filter(member=member, address=anna.values["email"]).count() == 2
    assert not ConsentEvent.objects.filter(member=member, action="withdraw").exists()
    assert ConsentEvent.objects.filter(member=member,
                                       ip_address=anna.values["ip_address"]).count() == 2
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ERASURE).exists()


def test_erasure_queries_do_not_grow_with_the_number_of_messages():
    def erase_queries(messages: int) -> int:
        person = _person(100 + messages)
        now = timezone.now()
        Message.objects.bulk_create(
            Message(member=person.member, channel="sms", address=person.values["phone"],
                    status="sent", created_at=now, updated_at=now)
            for _ in range(messages)
        )
        with CaptureQueriesContext(connection) as queries:
            member_erase(member=person.member, by=None, reason="GDPR request")
        return len(queries)

    erase_queries(1)  # fills Django's per-process caches (content types) first
    assert erase_queries(2) == erase_queries(40)


def test_erasure_leaves_no_personal_data_in_any_column(two_people, marketer):
    anna, bert = two_people
    _bounce(Mailing.objects.get(name="Spring offers"), anna)
    _admin_changed_messenger_account(anna, marketer)
    member_data_export(member=anna.member, by=marketer)
    values = list(anna.values.values())
    # The search must be able to find what it looks for, or "nothing found" proves nothing.
    assert sorted(_columns_holding(values)) == sorted(values)

    member_erase(member=anna.member, by=marketer, reason="GDPR request #1")

    assert _columns_holding(values) == {}
    assert sorted(_columns_holding(list(bert.values.values()))) == sorted(bert.values.values())


def test_erasure_keeps_orders_for_revenue(two_people):
    anna, _ = two_people

    member_erase(member=anna.member, by=None, reason="GDPR request #1")

    assert Counter(anna.member.orders.values_list("total", flat=True)) == Counter(
        [Decimal("22.50")]
    )
