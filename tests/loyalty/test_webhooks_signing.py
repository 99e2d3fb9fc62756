from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loyalty.webhooks.delivery import deliveries_send_due, signature_header
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.services import subscription_secret_rotate
from tests.loyalty.webhooks_support import event_record, receiver, subscribe  # noqa: F401
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_signature_matches_the_standard_webhooks_example_vector():
    # The example of the Standard Webhooks specification.
    header = signature_header(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                              "msg_p5jXN8AQM9LWM0D4loKWxJek",
                              datetime.fromtimestamp(1614265330, UTC), b'{"test": 2432232314}')

    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_receiver_verifies_the_signed_delivery_and_reads_the_event(receiver):  # noqa: F811
    # given
    member = MemberFactory()
    subscribe(receiver)
    event = event_record(member, "ORDER_PLACED", order="A-7")

    # when
    webhooks_relay_pass()
    deliveries_send_due()

    # then
    [call] = receiver.verified_calls()
    assert call.headers["webhook-id"] == str(event.id)
    assert call.json["type"] == "ORDER_PLACED"
    assert call.json["data"]["member"] == member.external_id
    assert call.json["data"]["payload"] == {"order": "A-7"}
    assert call.json["data"]["version"] == 1


def test_rotated_secret_signs_beside_the_previous_one_so_both_verify(receiver):  # noqa: F811
    # given
    subscription = subscribe(receiver)
    new_secret = subscription_secret_rotate(subscription=subscription)
    receiver.secrets.append(new_secret)
    event_record(MemberFactory())

    # when
    webhooks_relay_pass()
    deliveries_send_due()

    # then
    [call] = receiver.calls
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    assert call.verified_with == receiver.secrets


def test_subscription_stores_its_secret_encrypted(receiver):  # noqa: F811
    subscription = subscribe(receiver)

    assert "whsec_" not in subscription.secret_encrypted
    assert subscription.signing_secrets(now=datetime.now(UTC)) == receiver.secrets
