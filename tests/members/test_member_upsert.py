from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from members.models import CustomAttribute, Member
from members.services import member_upsert
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def attributes():
    CustomAttribute.objects.create(key="shoe_size", label="Shoe size", type="integer")
    CustomAttribute.objects.create(key="newsletter_style", label="Style", type="choice",
                                   choices=["short", "long"])
    CustomAttribute.objects.create(key="vip_since", label="VIP since", type="date")


def _errors(**data) -> dict:
    with pytest.raises(ValidationError) as caught:
        member_upsert(external_id="E1", data=data)
    return caught.value.message_dict


def test_new_external_id_creates_a_member_with_a_normalized_profile():
    member, created = member_upsert(external_id="E1", data={
        "first_name": " Ana ", "email": "Ana@Example.COM", "phone": "0151 23456789",
        "country": "de", "birth_date": "1990-04-01", "gender": "female",
        "latitude": "52.52", "longitude": 13.405, "timezone": "Europe/Berlin",
    })

    assert created
    assert (member.first_name, member.email, member.phone, member.country) == (
        "Ana", "ana@example.com", "+4915123456789", "DE")
    assert str(member.birth_date) == "1990-04-01"
    assert (member.latitude, member.longitude) == (52.52, 13.405)
    assert member.status == "active" and member.registered_at is not None


def test_known_external_id_updates_only_the_fields_given():
    MemberFactory(external_id="E1", first_name="Ana", last_name="Silva")

    member, created = member_upsert(external_id="E1", data={"last_name": "Costa"})

    assert not created
    assert (member.first_name, member.last_name) == ("Ana", "Costa")
    assert Member.objects.count() == 1


def test_invalid_phone_is_refused_naming_the_field():
    assert "phone" in _errors(phone="12345")


@pytest.mark.parametrize("field", ["timezone", "gender", "country", "email", "phone",
                                   "status", "language"])
@pytest.mark.parametrize("value", [["Europe/Berlin"], 7, {"a": 1}])
def test_a_value_of_the_wrong_json_type_is_refused_naming_the_field(field, value):
    # Found by schemathesis: a list as the time zone was a server error.
    assert field in _errors(**{field: value})


def test_invalid_email_is_refused_naming_the_field():
    assert "email" in _errors(email="not-an-email")


def test_unknown_profile_field_is_refused():
    assert _errors(favourite_colour="blue") == {"favourite_colour": ["unknown field"]}


def test_every_bad_field_is_named_at_once():
    assert set(_errors(email="x", phone="1", timezone="Mars/Base", country="Germany")) == {
        "email", "phone", "timezone", "country"}


def test_latitude_without_longitude_is_refused():
    assert "latitude" in _errors(latitude=10)


def test_custom_attributes_are_typed_on_write(attributes):
    member, _ = member_upsert(external_id="E1", data={"custom_attributes": {
        "shoe_size": "42", "newsletter_style": "short", "vip_since": "2024-02-29"}})

    assert member.custom_attributes == {
        "shoe_size": 42, "newsletter_style": "short", "vip_since": "2024-02-29"}


def test_unknown_custom_attribute_is_refused_naming_it(attributes):
    errors = _errors(custom_attributes={"hat_size": 7})

    assert list(errors) == ["custom_attributes.hat_size"]


def test_custom_attribute_of_the_wrong_type_is_refused_naming_it(attributes):
    errors = _errors(custom_attributes={"shoe_size": "forty", "newsletter_style": "medium"})

    assert set(errors) == {"custom_attributes.shoe_size", "custom_attributes.newsletter_style"}


def test_custom_attributes_merge_and_null_removes_a_key(attributes):
    member_upsert(external_id="E1", data={"custom_attributes": {"shoe_size": 42,
                                                                "newsletter_style": "long"}})

    member, _ = member_upsert(external_id="E1", data={"custom_attributes": {"shoe_size": None}})

    assert member.custom_attributes == {"newsletter_style": "long"}


def test_changing_the_email_drops_its_confirmation():
    MemberFactory(external_id="E1", email="old@example.com", email_verified_at=timezone.now())

    member, _ = member_upsert(external_id="E1", data={"email": "new@example.com"})

    assert member.email_verified_at is None


def test_same_email_in_another_case_keeps_its_confirmation():
    MemberFactory(external_id="E1", email="ana@example.com", email_verified_at=timezone.now())

    member, _ = member_upsert(external_id="E1", data={"email": "ANA@example.com"})

    assert member.email_verified_at is not None


def test_erased_member_cannot_be_brought_back_by_an_upsert():
    MemberFactory(external_id="E1", status="erased")

    with pytest.raises(ValidationError) as caught:
        member_upsert(external_id="E1", data={"first_name": "Ana"})

    assert "external_id" in caught.value.message_dict


def test_status_erased_cannot_be_set_through_a_profile_change():
    assert "status" in _errors(status="erased")
