"""Events posted to the integration API: the catalog, custom types, members, batches."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from loyalty.integration.models import CustomEventType
from loyalty.models import Event
from loyalty.webhooks.relay import events_relay_nudge
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

STAMP_SCHEMA = {"type": "object", "required": ["store"],
                "properties": {"store": {"type": "string"},
                               "stamps": {"type": "array", "items": {"type": "integer"}}}}


@pytest.fixture
def stamp_type() -> CustomEventType:
    return CustomEventType.objects.create(name="STAMP_COLLECTED", payload_schema=STAMP_SCHEMA)


def test_catalog_event_is_recorded_for_its_member(integration):
    member = MemberFactory()

    response = integration.post("events/", {
        "type": "CART_ABANDONED", "member": member.external_id,
        "occurred_at": "2026-12-01T10:00:00+01:00", "payload": {"items": 3}, "version": 2})

    assert response.status_code == 201
    event = Event.objects.get(pk=response.json()["id"])
    assert (event.type, event.member_id, event.payload, event.version) == (
        "CART_ABANDONED", member.pk, {"items": 3}, 2)
    assert event.occurred_at.isoformat() == "2026-12-01T09:00:00+00:00"


def test_unknown_event_type_is_400_unknown_event_type(integration):
    response = integration.post("events/", {"type": "SOMETHING_ELSE", "payload": {}})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_event_type"
    assert not Event.objects.exists()


def test_unknown_member_is_400_unknown_member(integration):
    response = integration.post("events/", {"type": "BIRTHDAY", "member": "nobody"})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_member"


def test_custom_event_type_payload_matching_its_schema_is_recorded(integration, stamp_type):
    response = integration.post("events/", {"type": "STAMP_COLLECTED",
                                            "payload": {"store": "riga", "stamps": [1, 2]}})

    assert response.status_code == 201
    assert Event.objects.get().type == "STAMP_COLLECTED"


def test_custom_event_payload_failing_its_schema_names_the_path(integration, stamp_type):
    response = integration.post("events/", {"type": "STAMP_COLLECTED",
                                            "payload": {"store": "riga", "stamps": [1, "two"]}})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_payload"
    assert response.json()["path"] == "$.stamps[1]"
    assert not Event.objects.exists()


def test_inactive_custom_event_type_is_unknown(integration, stamp_type):
    stamp_type.active = False
    stamp_type.save()

    response = integration.post("events/", {"type": "STAMP_COLLECTED",
                                            "payload": {"store": "riga"}})

    assert response.json()["code"] == "unknown_event_type"


def test_custom_event_type_with_an_invalid_schema_is_refused():
    event_type = CustomEventType(name="STAMP_COLLECTED", payload_schema={"type": "nonsense"})

    with pytest.raises(ValidationError) as refused:
        event_type.full_clean()

    assert "payload_schema" in refused.value.message_dict


def test_custom_event_type_may_not_take_a_catalog_name():
    with pytest.raises(ValidationError) as refused:
        CustomEventType(name="ORDER_PLACED").full_clean()

    assert "name" in refused.value.message_dict


def test_batch_records_every_event(integration):
    members = MemberFactory.create_batch(3)
    events = [{"type": "BIRTHDAY", "member": member.external_id} for member in members] * 100

    response = integration.post("events/batch/", {"events": events})

    assert response.status_code == 201
    assert len(response.json()["ids"]) == 300
    assert Event.objects.filter(type="BIRTHDAY").count() == 300


def test_batch_is_one_insert_and_a_few_queries(integration, django_assert_max_num_queries):
    member = MemberFactory()
    events = [{"type": "BIRTHDAY", "member": member.external_id}] * 500
    integration.post("events/", {"type": "BIRTHDAY"})  # last_used_at is written by this one

    with django_assert_max_num_queries(10) as captured:
        integration.post("events/batch/", {"events": events})

    inserts = [q["sql"] for q in captured.captured_queries
               if q["sql"].startswith('INSERT INTO "loyalty_event"')]
    assert len(inserts) == 1


def test_batch_with_bad_events_records_nothing_and_names_each_by_index(integration, stamp_type):
    member = MemberFactory()
    events = [{"type": "BIRTHDAY", "member": member.external_id},
              {"type": "NOT_A_TYPE"},
              {"type": "STAMP_COLLECTED", "payload": {}},
              {"type": "BIRTHDAY", "member": "nobody"}]

    response = integration.post("events/batch/", {"events": events})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_events"
    assert [(error["index"], error["code"]) for error in body["errors"]] == [
        (1, "unknown_event_type"), (2, "invalid_payload"), (3, "unknown_member")]
    assert not Event.objects.exists()


def test_batch_over_1000_events_is_refused(integration):
    response = integration.post("events/batch/", {"events": [{"type": "BIRTHDAY"}] * 1001})

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "batch_too_large"
    assert not Event.objects.exists()


def test_recorded_events_wake_the_webhook_relay_after_commit(
        integration, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        integration.post("events/batch/", {"events": [{"type": "BIRTHDAY"}] * 3})

    assert events_relay_nudge in callbacks
