"""The member's preferences through the app's API: consent per channel and category (recorded in
the consent ledger with source `app`), language and quiet hours."""

from __future__ import annotations

from datetime import time

import pytest
from rest_framework.test import APIClient

from members.models import Consent, ConsentEvent, Member
from tests.members.factories import (
    DeviceFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
)
from tests.members.preferences_samples import member_allowing_email_and_sms

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/preferences/"


@pytest.fixture
def ann():
    return member_allowing_email_and_sms()


def _state(member, channel: str, category=None) -> str | None:
    return (Consent.objects.filter(member=member, channel=channel, category=category)
            .values_list("state", flat=True).first())


def _put(client, body: dict):
    return client.put(URL, body, format="json", REMOTE_ADDR="203.0.113.9",
                      HTTP_USER_AGENT="EngageApp/3.1")


def test_the_member_sees_the_channels_they_can_be_reached_on_and_their_consent(
        member_api_client, ann):
    reply = member_api_client(ann).get(URL)

    assert reply.status_code == 200
    assert [(c["channel"], c["subscribed"]) for c in reply.json()["channels"]] == [
        ("sms", True), ("email", True)]
    assert reply.json()["quiet_hours"] is None
    assert reply.json()["timezone"] == "Europe/Berlin"


def test_push_is_offered_once_the_app_registered_a_device(member_api_client, ann):
    DeviceFactory(member=ann)

    channels = [c["channel"] for c in member_api_client(ann).get(URL).json()["channels"]]

    assert "push" in channels


def test_refusing_sms_in_the_app_records_a_withdrawal_with_source_app(member_api_client, ann):
    reply = _put(member_api_client(ann), {"channels": {"sms": False}})

    event = ConsentEvent.objects.get(member=ann, channel="sms", action="withdraw")
    assert reply.status_code == 200
    assert (event.source, event.ip_address, event.user_agent) == (
        "app", "203.0.113.9", "EngageApp/3.1")
    assert event.consent_text == "App preferences: receive marketing by SMS unchecked"
    assert _state(ann, "sms") == "withdrawn"
    assert [(c["channel"], c["subscribed"]) for c in reply.json()["channels"]] == [
        ("sms", False), ("email", True)]


def test_allowing_a_channel_again_records_a_grant(member_api_client, ann):
    client = member_api_client(ann)
    _put(client, {"channels": {"sms": False}})

    _put(client, {"channels": {"sms": True}})

    assert list(ConsentEvent.objects.filter(member=ann, channel="sms")
                .values_list("action", "source")) == [("withdraw", "app"), ("grant", "app")]
    assert _state(ann, "sms") == "granted"


def test_a_channel_sent_as_it_already_is_records_nothing(member_api_client, ann):
    _put(member_api_client(ann), {"channels": {"sms": True, "email": True}})

    assert not ConsentEvent.objects.filter(member=ann).exists()


def test_leaving_a_category_withdraws_it_on_every_channel(member_api_client, ann):
    partners = SubscriptionCategoryFactory(code="partners", name="Partner offers")

    reply = _put(member_api_client(ann), {"categories": {"partners": False}})

    assert reply.json()["categories"] == [{"code": "partners", "name": "Partner offers",
                                           "description": "", "subscribed": False}]
    assert set(ConsentEvent.objects.filter(member=ann, category=partners)
               .values_list("channel", "action", "source")) == {
        (channel, "withdraw", "app") for channel in ("sms", "email", "push", "viber", "social")}


def test_the_member_changes_their_language(member_api_client, ann):
    reply = _put(member_api_client(ann), {"language": "ru"})

    ann.refresh_from_db()
    assert reply.json()["language"] == "ru" and ann.language == "ru"


def test_the_member_sets_quiet_hours_past_midnight(member_api_client, ann):
    reply = _put(member_api_client(ann), {"quiet_hours": {"starts_at": "22:30",
                                                         "ends_at": "07:00"}})

    ann.refresh_from_db()
    assert reply.json()["quiet_hours"] == {"starts_at": "22:30", "ends_at": "07:00"}
    assert (ann.quiet_hours_start, ann.quiet_hours_end) == (time(22, 30), time(7))


def test_null_quiet_hours_remove_them(member_api_client, ann):
    Member.objects.filter(pk=ann.pk).update(quiet_hours_start=time(22), quiet_hours_end=time(7))

    reply = _put(member_api_client(ann), {"quiet_hours": None})

    ann.refresh_from_db()
    assert reply.json()["quiet_hours"] is None and ann.quiet_hours_start is None


def test_quiet_hours_left_out_stay_as_they_are(member_api_client, ann):
    Member.objects.filter(pk=ann.pk).update(quiet_hours_start=time(22), quiet_hours_end=time(7))

    _put(member_api_client(ann), {"language": "ru"})

    ann.refresh_from_db()
    assert (ann.quiet_hours_start, ann.quiet_hours_end) == (time(22), time(7))


def test_quiet_hours_ending_when_they_start_are_refused(member_api_client, ann):
    reply = _put(member_api_client(ann), {"quiet_hours": {"starts_at": "22:00",
                                                         "ends_at": "22:00"}})

    ann.refresh_from_db()
    assert reply.status_code == 400 and "quiet_hours" in reply.json()
    assert ann.quiet_hours_start is None


def test_a_malformed_time_is_refused_naming_the_field(member_api_client, ann):
    reply = _put(member_api_client(ann), {"quiet_hours": {"starts_at": "25:00",
                                                         "ends_at": "07:00"}})

    assert reply.status_code == 400 and "starts_at" in reply.json()["quiet_hours"]


def test_a_channel_without_an_address_is_refused_and_nothing_changes(member_api_client, ann):
    reply = _put(member_api_client(ann), {"channels": {"sms": False, "viber": True},
                                          "language": "ru"})

    ann.refresh_from_db()
    assert reply.status_code == 400 and "channels.viber" in reply.json()
    assert not ConsentEvent.objects.filter(member=ann).exists()
    assert ann.language == "en"


def test_an_unknown_category_is_refused_and_nothing_changes(member_api_client, ann):
    reply = _put(member_api_client(ann), {"channels": {"sms": False},
                                          "categories": {"no-such-thing": False}})

    assert reply.status_code == 400 and "categories.no-such-thing" in reply.json()
    assert not ConsentEvent.objects.filter(member=ann).exists()


def test_a_language_the_program_does_not_speak_is_refused(member_api_client, ann):
    reply = _put(member_api_client(ann), {"language": "xx"})

    assert reply.status_code == 400 and "language" in reply.json()


def test_allowing_email_under_double_opt_in_says_a_confirmation_is_pending(
        member_api_client, settings):
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = True
    bob = MemberFactory(email="bob@example.com")

    reply = _put(member_api_client(bob), {"channels": {"email": True}})

    assert reply.json()["email_confirmation_pending"] is True
    assert ConsentEvent.objects.get(member=bob, channel="email").source == "app"


def test_a_change_from_the_account_pages_session_is_recorded_as_account_page(account_client,
                                                                            ann):
    reply = account_client(ann).put(URL, {"channels": {"sms": False}},
                                    content_type="application/json")

    assert reply.status_code == 200
    assert ConsentEvent.objects.get(member=ann, channel="sms").source == "account_page"


# --- access ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["get", "put"])
def test_an_anonymous_caller_is_refused(method):
    reply = getattr(APIClient(), method)(URL, {}, format="json")

    assert reply.status_code == 401


def test_a_staff_session_is_not_a_member_here(marketer_client):
    assert marketer_client.get(URL).status_code == 401


def test_a_member_token_opens_no_staff_consent_endpoint(member_api_client, ann):
    reply = member_api_client(ann).get(f"/api/v1/members/{ann.pk}/")

    assert reply.status_code == 403
