from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from members.models import validate_e164
from members.services import phone_normalize


def test_international_number_with_spaces_becomes_e164():
    assert phone_normalize("+49 151 2345 6789") == "+4915123456789"


def test_national_number_uses_the_given_region():
    assert phone_normalize("0151 23456789", region="DE") == "+4915123456789"


def test_national_number_without_region_is_rejected_naming_the_phone_field():
    with pytest.raises(ValidationError) as error:
        phone_normalize("0151 23456789")

    assert "phone" in error.value.message_dict


def test_number_that_cannot_exist_is_rejected():
    with pytest.raises(ValidationError):
        phone_normalize("+49 1")


def test_blank_stays_blank():
    assert phone_normalize("  ") == ""


def test_stored_phones_must_already_be_e164():
    with pytest.raises(ValidationError):
        validate_e164("+49 151 2345 6789")
    validate_e164("+4915123456789")
