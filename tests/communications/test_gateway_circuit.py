"""A gateway whose batches keep failing opens its circuit: batches go through its backup, or
wait, instead of spending every message's attempts on a dead provider."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from communications.circuits import circuit_close, circuit_open_seconds, circuit_record
from communications.models import Mailing, Message
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member
from tests.peers.smtp import free_port

pytestmark = pytest.mark.django_db

Status = Message.Status


@pytest.fixture(autouse=True)
def three_failures_open_the_circuit(settings):
    settings.ENGAGE_CIRCUIT_FAILURES = 3
    settings.ENGAGE_CIRCUIT_OPEN_SECONDS = 60


def _dead_gateway(**fields):
    # Nothing listens on a fresh free port: every connection is refused at once.
    return GatewayFactory(settings={"host": "127.0.0.1", "port": free_port(), "timeout": 2},
                          **fields)


def _sending_mailing(*, gateway, members: int = 4) -> Mailing:
    for _ in range(members):
        consenting_member()
    mailing = MailingFactory(gateway=gateway)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    return mailing


def _dispatch(mailing: Mailing, times: int) -> list[dict]:
    return [message_batch_dispatch(mailing_id=mailing.pk, batch_size=1) for _ in range(times)]


def _waiting(mailing: Mailing) -> int:
    """Its messages queued for a later retry."""
    return Message.objects.filter(mailing=mailing, status=Status.QUEUED,
                                  not_before__gt=timezone.now()).count()


def test_batches_that_reach_nothing_open_the_gateways_circuit():
    gateway = _dead_gateway()
    mailing = _sending_mailing(gateway=gateway)

    _dispatch(mailing, 2)
    assert circuit_open_seconds(gateway_id=gateway.pk) == 0
    _dispatch(mailing, 1)

    assert 0 < circuit_open_seconds(gateway_id=gateway.pk) <= 60


def test_while_the_circuit_is_open_batches_go_through_the_backup(smtp_peer):
    backup = GatewayFactory(name="Backup relay", settings=smtp_peer.gateway_settings())
    gateway = _dead_gateway(backup=backup)
    mailing = _sending_mailing(gateway=gateway, members=5)
    _dispatch(mailing, 3)  # three messages fail once each, and the circuit opens

    outcome = message_batch_dispatch(mailing_id=mailing.pk)

    assert outcome["sent"] == 5
    assert len(smtp_peer.received) == 5
    assert set(Message.objects.filter(mailing=mailing).values_list("gateway_id", flat=True)) \
        == {backup.pk}


def test_messages_waiting_out_a_retry_are_due_at_once_when_the_circuit_fails_over(smtp_peer):
    backup = GatewayFactory(name="Backup relay", settings=smtp_peer.gateway_settings())
    gateway = _dead_gateway(backup=backup)
    mailing = _sending_mailing(gateway=gateway, members=3)
    _dispatch(mailing, 2)
    assert _waiting(mailing) == 2  # their backoff is for a primary that might recover

    _dispatch(mailing, 1)  # the third failure opens the circuit; the backup is up

    assert _waiting(mailing) == 0
    assert message_batch_dispatch(mailing_id=mailing.pk)["sent"] == 3


def test_without_a_backup_a_retry_keeps_its_backoff_when_the_circuit_opens():
    gateway = _dead_gateway()
    mailing = _sending_mailing(gateway=gateway, members=3)

    _dispatch(mailing, 3)

    assert _waiting(mailing) == 3


def test_without_a_backup_an_open_circuit_claims_nothing_and_spends_no_attempt():
    gateway = _dead_gateway()
    mailing = _sending_mailing(gateway=gateway, members=4)
    _dispatch(mailing, 3)

    outcome = message_batch_dispatch(mailing_id=mailing.pk)

    assert outcome == {"claimed": 0, "circuit_open": 1}
    untouched = Message.objects.filter(mailing=mailing, attempts=0)
    assert [message.status for message in untouched] == [Status.QUEUED]


def test_a_batch_the_provider_answered_starts_the_count_again(smtp_peer):
    gateway = _dead_gateway()
    circuit_record(gateway_id=gateway.pk, failed=True)
    circuit_record(gateway_id=gateway.pk, failed=True)

    circuit_record(gateway_id=gateway.pk, failed=False)
    circuit_record(gateway_id=gateway.pk, failed=True)

    assert circuit_open_seconds(gateway_id=gateway.pk) == 0


def test_after_the_circuit_closes_one_more_failure_opens_it_again():
    gateway = _dead_gateway()
    for _ in range(3):
        circuit_record(gateway_id=gateway.pk, failed=True)
    circuit_close(gateway_id=gateway.pk)
    circuit_record(gateway_id=gateway.pk, failed=True)  # would be the trial batch

    assert circuit_open_seconds(gateway_id=gateway.pk) == 0  # closed by hand, count reset
    for _ in range(2):
        circuit_record(gateway_id=gateway.pk, failed=True)
    assert circuit_open_seconds(gateway_id=gateway.pk) > 0


def test_a_backup_of_another_channel_is_refused():
    backup = GatewayFactory(channel="sms", provider="file_sink")
    gateway = GatewayFactory.build(name="Main relay", backup=backup)

    with pytest.raises(ValidationError) as error:
        gateway.full_clean()

    assert "the backup sends sms" in error.value.message_dict["backup"][0]


def test_the_gateway_admin_shows_an_open_circuit(marketer_client):
    gateway = _dead_gateway(name="Main relay")
    for _ in range(3):
        circuit_record(gateway_id=gateway.pk, failed=True)

    response = marketer_client.get("/admin/communications/gateway/")

    assert "open for" in response.content.decode()
