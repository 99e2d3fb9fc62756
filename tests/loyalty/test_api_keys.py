from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.integration.keys import api_key_create, api_key_revoke, api_key_rotate
from loyalty.integration.models import ApiKey
from tests.loyalty.conftest import IntegrationClient
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

EVENT = {"type": "BIRTHDAY", "payload": {}}


def test_key_is_stored_only_as_its_sha256():
    api_key, key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(value) for value in stored.__dict__.values()}
    assert key.startswith(f"ek_{stored.prefix}_")


def test_key_with_the_scope_is_accepted():
    _, key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    response = IntegrationClient(key).post("events/", EVENT)

    assert response.status_code == 201


def test_key_without_the_scope_is_refused_403():
    _, key = api_key_create(name="Shop", scopes=["orders:write"], by=None)

    response = IntegrationClient(key).post("events/", EVENT)

    assert response.status_code == 403


def test_unknown_key_is_refused_401():
    response = IntegrationClient("ek_00000000_not-a-key").post("events/", EVENT)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_revoked_key_is_refused_401():
    api_key, key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    api_key_revoke(api_key=api_key)

    assert IntegrationClient(key).post("events/", EVENT).status_code == 401


def test_expired_key_is_refused_401():
    _, key = api_key_create(name="Shop", scopes=["events:write"], by=None,
                            expires_at=timezone.now() - timedelta(seconds=1))

    assert IntegrationClient(key).post("events/", EVENT).status_code == 401


def test_rotated_key_works_during_the_grace_period_then_stops(settings):
    settings.ENGAGE_API_KEY_ROTATION_GRACE = timedelta(hours=1)
    api_key, old_key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    new, new_key = api_key_rotate(api_key=api_key, by=None)

    assert new.scopes == ["events:write"]
    assert IntegrationClient(old_key).post("events/", EVENT).status_code == 201
    assert IntegrationClient(new_key).post("events/", EVENT).status_code == 201
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now())
    assert IntegrationClient(old_key).post("events/", EVENT).status_code == 401
    assert IntegrationClient(new_key).post("events/", EVENT).status_code == 201


def test_last_used_is_written_at_most_once_a_minute():
    api_key, key = api_key_create(name="Shop", scopes=["events:write"], by=None)
    client = IntegrationClient(key)
    client.post("events/", EVENT)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at

    client.post("events/", EVENT)

    assert first is not None
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first


def test_api_key_cannot_reach_staff_endpoints():
    _, key = api_key_create(name="Shop", scopes=["members:write"], by=None)
    MemberFactory()

    response = IntegrationClient(key).client.get(
        "/api/v1/members/", headers={"Authorization": f"Api-Key {key}"})

    assert response.status_code in (401, 403)


def test_staff_session_may_use_the_integration_api(marketer_client):
    response = marketer_client.post("/api/v1/integration/events/", EVENT,
                                    content_type="application/json")

    assert response.status_code == 201


def test_admin_creation_shows_the_key_once(marketer_client):
    response = marketer_client.post("/admin/loyalty/apikey/add/", {
        "name": "POS Riga", "scopes": ["orders:write", "events:write"], "expires_at": ""},
        follow=True)

    api_key = ApiKey.objects.get(name="POS Riga")
    shown = [str(message) for message in response.context["messages"]
             if f"ek_{api_key.prefix}_" in str(message)]
    assert len(shown) == 1
    key = shown[0].split()[-1]
    assert api_key.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert api_key.scopes == ["orders:write", "events:write"]
    assert key not in marketer_client.get(f"/admin/loyalty/apikey/{api_key.pk}/change/"
                                          ).content.decode()


def test_admin_revoke_action_stops_the_key(marketer_client):
    api_key, key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    marketer_client.post("/admin/loyalty/apikey/", {
        "action": "revoke", "_selected_action": [api_key.pk]})

    assert IntegrationClient(key).post("events/", EVENT).status_code == 401


def test_admin_rotate_action_shows_the_new_key_and_keeps_the_old_for_the_grace(
        marketer_client, settings):
    settings.ENGAGE_API_KEY_ROTATION_GRACE = timedelta(hours=2)
    api_key, old_key = api_key_create(name="Shop", scopes=["events:write"], by=None)

    response = marketer_client.post("/admin/loyalty/apikey/", {
        "action": "rotate", "_selected_action": [api_key.pk]}, follow=True)

    new = ApiKey.objects.exclude(pk=api_key.pk).get(name="Shop")
    shown = [str(m) for m in response.context["messages"] if f"ek_{new.prefix}_" in str(m)]
    assert IntegrationClient(shown[0].split()[-1]).post("events/", EVENT).status_code == 201
    assert IntegrationClient(old_key).post("events/", EVENT).status_code == 201
    remaining = ApiKey.objects.get(pk=api_key.pk).expires_at - timezone.now()
    assert timedelta(hours=1, minutes=59) < remaining <= timedelta(hours=2)
