"""The HTTP adapters' dispatch scenarios at tiny size (25 messages, one run), and the audiences
they give members: real workers, each adapter's peer in its own process."""

from __future__ import annotations

import json

import pytest

from bench.results import result_line
from tests.test_bench_smoke import FIXED_KEYS, bench_environment  # noqa: F401  (the fixture)

MESSAGES = 25


@pytest.mark.django_db
@pytest.mark.parametrize(("network", "channel"), [("viber", "viber"), ("telegram", "social")])
def test_messenger_audience_gets_one_account_and_one_consent_each_however_often_ensured(
        network, channel):
    from bench.http_gateways import messenger_audience_ensure
    from members.models import Consent, ConsentEvent, MessengerAccount
    from tests.members.factories import MemberFactory

    members = [MemberFactory() for _ in range(5)]
    MemberFactory(status="blocked")

    ids = messenger_audience_ensure(4, network=network, channel=channel)
    MessengerAccount.objects.filter(member_id=ids[0]).update(is_active=False)
    again = messenger_audience_ensure(4, network=network, channel=channel)

    assert ids == again == [m.pk for m in members[:4]]
    accounts = MessengerAccount.objects.filter(member_id__in=ids)
    assert sorted(accounts.values_list("member_id", flat=True)) == ids
    assert {(a.network, a.is_active) for a in accounts} == {(network, True)}
    assert sorted(Consent.objects.filter(channel=channel, state="granted")
                  .values_list("member_id", flat=True)) == ids
    assert sorted(ConsentEvent.objects.filter(channel=channel, action="grant")
                  .values_list("member_id", flat=True)) == ids


@pytest.mark.django_db
def test_email_audience_is_the_members_who_may_get_email_and_writes_nothing():
    from bench.http_gateways import email_audience
    from members.models import Consent, Suppression
    from tests.members.factories import ConsentFactory, MemberFactory, consenting_member

    first, second = consenting_member(), consenting_member()
    MemberFactory()  # no consent
    suppressed = consenting_member()
    Suppression.objects.create(channel="email", address=suppressed.email, reason="hard_bounce")
    ConsentFactory(member=MemberFactory(status="blocked"))
    last = consenting_member()
    consents = Consent.objects.count()

    assert email_audience(3) == [first.pk, second.pk, last.pk]
    with pytest.raises(RuntimeError, match="only 3 members may get email"):
        email_audience(4)
    assert Consent.objects.count() == consents


def _sms_members() -> None:
    from tests.members.factories import MemberFactory

    for n in range(MESSAGES + 5):
        MemberFactory(phone=f"+4915100{n:06d}")


def _members() -> None:
    from tests.members.factories import MemberFactory

    MemberFactory.create_batch(MESSAGES + 5)


def _email_members() -> None:
    from tests.members.factories import consenting_member

    for _ in range(MESSAGES + 5):
        consenting_member(channel="email")


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.parametrize(("adapter", "members"), [
    ("twilio", _sms_members), ("http_sms", _sms_members), ("viber", _members),
    ("telegram", _members), ("anymail", _email_members),
])
def test_http_dispatch_scenario_sends_every_message_through_workers_to_its_peer(
        bench_environment, adapter, members):  # noqa: F811  (the fixture imported above)
    from bench import http_gateways
    from bench.__main__ import SCENARIOS
    from bench.options import Options

    members()
    scenario = SCENARIOS[f"dispatch_{adapter}"]

    measured = getattr(http_gateways, f"dispatch_{adapter}")(Options(messages=MESSAGES, runs=1))

    # every message was sent and counted by the peer (the scenario raises otherwise)
    assert measured.n == MESSAGES
    assert measured.value > 0
    assert measured.extra["peer_received_per_run"] == [MESSAGES]
    assert measured.extra["concurrency"] == 16  # every adapter, anymail too, sends concurrently
    assert measured.extra["adapter_alone_one_connection"] > 0
    assert measured.extra["adapter_alone_concurrency"] > 0
    # the peer's ceiling, from the adapter's own requests (anymail's: its /email/batch calls)
    assert measured.extra["peer_ceiling"] > 0
    assert scenario.measure == f"bench.http_gateways.dispatch_{adapter}"
    line = json.loads(result_line(scenario=scenario.name, unit=scenario.unit,
                                  target=scenario.target, measured=measured))
    assert list(line)[:6] == FIXED_KEYS
    assert line["target"] == 2000


@pytest.mark.slow
@pytest.mark.pipeline
def test_http_sms_scenario_counts_a_phone_two_members_share_once(bench_environment):  # noqa: F811
    from bench.http_gateways import dispatch_http
    from bench.options import Options
    from tests.members.factories import MemberFactory

    for n in range(MESSAGES - 1):
        MemberFactory(phone=f"+4915100{n:06d}")
    MemberFactory(phone="+4915100000000")  # the first member's phone

    measured = dispatch_http(Options(messages=MESSAGES, runs=1), adapter="http_sms")

    assert measured.n == MESSAGES - 1
    assert measured.extra["shared_address_skipped_per_run"] == [1]
    assert measured.extra["peer_received_per_run"] == [MESSAGES - 1]
