"""The app registers and removes its push tokens (/api/v1/me/devices/): checked per platform,
stored in one form, moved to whoever registers them last."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rest_framework.test import APIClient

from members.models import Device
from members.services.devices import DEVICES_PER_MEMBER
from tests.members.factories import DeviceFactory, MemberFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/devices/"
FCM_TOKEN = "dGVzdA:APA91bH" + "x" * 150
APNS_TOKEN = "A1B2C3D4E5F60718293A4B5C6D7E8F90" * 2


def _b64url(raw: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(raw).decode()
    return text if padded else text.rstrip("=")


def _browser_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def subscription(*, endpoint: str = "https://fcm.googleapis.com/fcm/send/abc:def",
                 p256dh: bytes | None = None, auth: bytes = b"0123456789abcdef",
                 padded: bool = False, **extra) -> dict:
    return {"endpoint": endpoint, "expirationTime": None,
            "keys": {"p256dh": _b64url(p256dh or _browser_key(), padded=padded),
                     "auth": _b64url(auth, padded=padded)}, **extra}


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com")


def _register(client, platform: str, token: str, app: str = "club.engage.app"):
    return client.post(URL, {"platform": platform, "token": token, "app": app}, format="json")


# --- registering ----------------------------------------------------------------------------------

def test_a_new_token_is_registered_and_listed(member_api_client, ann):
    client = member_api_client(ann)

    reply = _register(client, "fcm", FCM_TOKEN)

    device = Device.objects.get(member=ann)
    assert reply.status_code == 201 and reply.json()["id"] == device.pk
    assert (device.platform, device.token, device.app, device.is_active) == (
        "fcm", FCM_TOKEN, "club.engage.app", True)
    assert [d["id"] for d in client.get(URL).json()] == [device.pk]


def test_the_same_token_again_is_the_same_device_seen_now(member_api_client, ann):
    client = member_api_client(ann)
    first = _register(client, "fcm", FCM_TOKEN).json()

    again = _register(client, "fcm", FCM_TOKEN)

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert again.json()["last_seen_at"] >= first["last_seen_at"]
    assert Device.objects.count() == 1


def test_a_token_registered_by_another_member_moves_to_them(member_api_client, ann):
    bob = MemberFactory()
    old = DeviceFactory(member=ann, platform="fcm", token=FCM_TOKEN)

    reply = _register(member_api_client(bob), "fcm", FCM_TOKEN)

    old.refresh_from_db()
    assert reply.status_code == 200 and reply.json()["id"] == old.pk
    assert old.member_id == bob.pk
    assert member_api_client(ann).get(URL).json() == []


def test_a_removed_token_registered_again_is_active_again(member_api_client, ann):
    removed = DeviceFactory(member=ann, platform="fcm", token=FCM_TOKEN, is_active=False)

    _register(member_api_client(ann), "fcm", FCM_TOKEN)

    removed.refresh_from_db()
    assert removed.is_active


def test_a_member_keeps_at_most_the_limit_of_active_devices(member_api_client, ann):
    for n in range(DEVICES_PER_MEMBER):
        DeviceFactory(member=ann, token=f"old-token-{n}")

    _register(member_api_client(ann), "fcm", FCM_TOKEN)

    assert Device.objects.filter(member=ann, is_active=True).count() == DEVICES_PER_MEMBER
    assert Device.objects.get(token=FCM_TOKEN).is_active


@pytest.mark.parametrize("platform", ["fcm", "hms"])
def test_a_registration_token_of_4096_characters_is_taken(member_api_client, ann, platform):
    reply = _register(member_api_client(ann), platform, "t" * 4096)

    assert reply.status_code == 201


@pytest.mark.parametrize("platform", ["fcm", "hms"])
@pytest.mark.parametrize("token", ["t" * 4097, "has a space", "tab\there", "ünïcode",
                                   "line\x00null"])
def test_a_malformed_registration_token_is_refused_naming_the_token(member_api_client, ann,
                                                                   platform, token):
    reply = _register(member_api_client(ann), platform, token)

    assert reply.status_code == 400 and "token" in reply.json()
    assert not Device.objects.exists()


def test_an_empty_token_is_refused(member_api_client, ann):
    reply = _register(member_api_client(ann), "fcm", "")

    assert reply.status_code == 400 and "token" in reply.json()


def test_an_apns_token_is_stored_in_lower_case(member_api_client, ann):
    _register(member_api_client(ann), "apns", APNS_TOKEN)

    assert Device.objects.get().token == APNS_TOKEN.lower()


def test_an_apns_token_in_another_letter_case_is_the_same_device(member_api_client, ann):
    client = member_api_client(ann)
    _register(client, "apns", APNS_TOKEN)

    reply = _register(client, "apns", APNS_TOKEN.lower())

    assert reply.status_code == 200 and Device.objects.count() == 1


@pytest.mark.parametrize("token", [APNS_TOKEN[:-1], APNS_TOKEN + "0", "G" * 64,
                                   FCM_TOKEN])
def test_an_apns_token_that_is_not_64_hex_digits_is_refused(member_api_client, ann, token):
    reply = _register(member_api_client(ann), "apns", token)

    assert reply.status_code == 400 and "64 hexadecimal" in reply.json()["token"][0]


def test_an_unknown_platform_is_refused(member_api_client, ann):
    reply = _register(member_api_client(ann), "pager", FCM_TOKEN)

    assert reply.status_code == 400 and "platform" in reply.json()


# --- web push subscriptions -----------------------------------------------------------------------

def test_a_web_push_subscription_is_stored_canonically(member_api_client, ann):
    key = _browser_key()
    sent = subscription(p256dh=key, padded=True)

    reply = _register(member_api_client(ann), "webpush", json.dumps(sent, indent=2))

    assert reply.status_code == 201
    assert Device.objects.get().token == (
        '{"endpoint":"https://fcm.googleapis.com/fcm/send/abc:def","keys":'
        f'{{"auth":"{_b64url(b"0123456789abcdef")}","p256dh":"{_b64url(key)}"}}}}')


def test_the_same_subscription_written_differently_is_the_same_device(member_api_client, ann):
    key, client = _browser_key(), member_api_client(ann)
    _register(client, "webpush", json.dumps(subscription(p256dh=key)))
    reordered = {"keys": {"auth": _b64url(b"0123456789abcdef", padded=True),
                          "p256dh": _b64url(key, padded=True)},
                 "endpoint": "https://fcm.googleapis.com/fcm/send/abc:def"}

    reply = _register(client, "webpush", json.dumps(reordered, separators=(", ", ": ")))

    assert reply.status_code == 200 and Device.objects.count() == 1


def test_in_production_a_subscription_to_the_cloud_metadata_address_is_refused(
        member_api_client, ann, settings):
    settings.ENGAGE_PUSH_ALLOW_LOOPBACK = False

    reply = _register(member_api_client(ann), "webpush",
                      json.dumps(subscription(endpoint="https://169.254.169.254/latest/")))

    assert reply.status_code == 400 and Device.objects.count() == 0
    assert any("private network" in text for text in reply.json()["token"])


@pytest.mark.parametrize("broken, problem", [
    ({"endpoint": "http://push.example.com/x"}, "endpoint"),
    ({"endpoint": "not a url"}, "endpoint"),
    ({"endpoint": 42}, "endpoint"),
    ({"p256dh": b"\x04" + b"\x01" * 64}, "keys.p256dh"),  # not a point of P-256
    ({"p256dh": b"\x04" * 64}, "keys.p256dh"),  # 64 bytes
    ({"auth": b"0123456789abcde"}, "keys.auth"),  # 15 bytes
])
def test_a_broken_web_push_subscription_is_refused_naming_the_part(member_api_client, ann,
                                                                  broken, problem):
    reply = _register(member_api_client(ann), "webpush", json.dumps(subscription(**broken)))

    assert reply.status_code == 400
    assert any(text.startswith(problem) for text in reply.json()["token"])


def test_a_compressed_browser_key_is_refused(member_api_client, ann):
    compressed = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)

    reply = _register(member_api_client(ann), "webpush",
                      json.dumps(subscription(p256dh=compressed)))

    assert reply.status_code == 400


def test_a_web_push_key_in_standard_base64_is_refused(member_api_client, ann):
    sent = subscription()
    sent["keys"]["auth"] = "+/+/+/+/+/+/+/+/+/+/+w"

    reply = _register(member_api_client(ann), "webpush", json.dumps(sent))

    assert reply.status_code == 400


@pytest.mark.parametrize("token", ["not json", "[]", '"text"', '{"keys": {}}'])
def test_a_web_push_token_that_is_no_subscription_is_refused(member_api_client, ann, token):
    reply = _register(member_api_client(ann), "webpush", token)

    assert reply.status_code == 400 and "token" in reply.json()


def test_a_subscription_too_long_for_a_message_address_is_refused(member_api_client, ann):
    long_endpoint = "https://push.example.com/" + "p" * 1000

    reply = _register(member_api_client(ann), "webpush",
                      json.dumps(subscription(endpoint=long_endpoint)))

    assert reply.status_code == 400 and "1024" in reply.json()["token"][0]


# --- removing -------------------------------------------------------------------------------------

def test_removing_a_device_deactivates_it_and_drops_it_from_the_list(member_api_client, ann):
    device = DeviceFactory(member=ann)
    client = member_api_client(ann)

    reply = client.delete(f"{URL}{device.pk}/")

    device.refresh_from_db()
    assert reply.status_code == 204 and not device.is_active
    assert client.get(URL).json() == []


def test_removing_another_members_device_is_not_found_and_changes_nothing(member_api_client,
                                                                         ann):
    bobs = DeviceFactory(member=MemberFactory())

    reply = member_api_client(ann).delete(f"{URL}{bobs.pk}/")

    bobs.refresh_from_db()
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert bobs.is_active


def test_another_members_devices_are_not_listed(member_api_client, ann):
    DeviceFactory(member=MemberFactory())

    assert member_api_client(ann).get(URL).json() == []


# --- access ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("get", URL), ("post", URL), ("delete", f"{URL}1/")])
def test_an_anonymous_caller_is_refused(method, path):
    assert getattr(APIClient(), method)(path).status_code == 401


def test_a_staff_session_is_not_a_member_here(marketer_client):
    assert marketer_client.get(URL).status_code == 401


def test_a_member_token_opens_no_staff_endpoint(member_api_client, ann):
    assert member_api_client(ann).get("/api/v1/suppressions/").status_code == 403
