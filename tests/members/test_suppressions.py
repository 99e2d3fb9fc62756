from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from members.models import AuditEntry, Suppression
from members.services import suppression_add, suppression_remove

pytestmark = pytest.mark.django_db


def test_email_address_is_stored_normalized():
    suppression = suppression_add(channel="email", address=" Ana@Example.com ",
                                  reason="complaint", source="anymail")

    assert suppression.address == "ana@example.com"


def test_phone_is_stored_in_e164():
    suppression = suppression_add(channel="sms", address="+49 (151) 2345-6789", reason="manual")

    assert suppression.address == "+4915123456789"


def test_suppressing_an_address_twice_keeps_the_first_reason():
    suppression_add(channel="email", address="a@example.com", reason="hard_bounce")

    again = suppression_add(channel="email", address="A@example.com", reason="manual")

    assert again.reason == "hard_bounce"
    assert Suppression.objects.count() == 1


def test_an_invalid_address_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as caught:
        suppression_add(channel="email", address="nope", reason="manual")

    assert "email" in caught.value.message_dict


def test_push_addresses_cannot_be_suppressed():
    with pytest.raises(ValidationError) as caught:
        suppression_add(channel="push", address="token", reason="manual")

    assert "channel" in caught.value.message_dict


def test_manual_block_and_lift_are_audited(marketer):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual",
                                  by=marketer)

    suppression_remove(suppression=suppression, by=marketer, reason="Customer asked again")

    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "suppression_add", "suppression_remove"]
    assert not Suppression.objects.exists()


def test_lifting_a_suppression_needs_a_reason(marketer):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")

    with pytest.raises(ValidationError):
        suppression_remove(suppression=suppression, by=marketer, reason=" ")

    assert Suppression.objects.exists()
