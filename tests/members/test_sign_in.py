"""Member sign-in for the app: a one-time code by email or SMS, traded for a revocable token."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from communications.models import Message
from communications.transactional import transactional_message_send
from members.models import MemberToken, SignInCode
from members.services.sign_in import TOKEN_LAST_USED_RESOLUTION
from tests.communications.factories import GatewayFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

SIGN_IN = "/api/v1/me/sign-in/"
VERIFY = "/api/v1/me/sign-in/verify/"


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", phone="+4915123456789", language="en")


def _ask(api: APIClient, address: str, ip: str = "203.0.113.5"):
    return api.post(SIGN_IN, {"address": address}, format="json", REMOTE_ADDR=ip)


def _code_sent_to(member) -> str:
    message = Message.objects.filter(member=member, content__kind="sign_in_code").latest("pk")
    return re.search(r"\b(\d{6})\b", message.content["body"]).group(1)


def _verify(api: APIClient, address: str, code: str, ip: str = "203.0.113.5", **extra):
    return api.post(VERIFY, {"address": address, "code": code, **extra}, format="json",
                    REMOTE_ADDR=ip)


def _signed_in(api: APIClient, member, address: str = "ann@example.com") -> APIClient:
    _ask(api, address)
    token = _verify(api, address, _code_sent_to(member)).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_code_asked_for_a_members_email_reaches_them_through_the_email_gateway(
        api, ann, smtp_peer, django_capture_on_commit_callbacks):
    GatewayFactory(name="Mail", channel="email", provider="smtp",
                   settings=smtp_peer.gateway_settings())

    with django_capture_on_commit_callbacks(execute=False):
        reply = _ask(api, "Ann@Example.com")
    message = Message.objects.get(member=ann, content__kind="sign_in_code")
    transactional_message_send(message_id=message.pk)

    assert reply.status_code == 202 and reply.json()["channel"] == "email"
    [received] = smtp_peer.received
    assert received.rcpt_tos == ["ann@example.com"]
    assert _code_sent_to(ann) in received.message.get_body().get_content()


def test_a_code_asked_for_a_phone_number_goes_by_sms_to_its_e164_form(api, ann):
    reply = _ask(api, "+49 151 23456789")

    message = Message.objects.get(member=ann, content__kind="sign_in_code")
    assert reply.json()["channel"] == "sms"
    assert (message.channel, message.address) == ("sms", "+4915123456789")


def test_an_address_no_member_has_gets_the_same_answer_and_no_message(api, ann):
    reply = _ask(api, "nobody@example.com")

    assert reply.status_code == 202
    assert reply.json()["detail"] == "If a member has this address, a code is on its way."
    assert not Message.objects.filter(content__kind="sign_in_code").exists()


def test_a_malformed_address_is_refused_with_a_stable_code(api):
    reply = _ask(api, "not an address")

    assert reply.status_code == 400 and reply.json()["code"] == "invalid_address"


def test_the_right_code_gives_a_token_that_opens_the_members_profile(api, ann):
    _ask(api, "ann@example.com")

    reply = _verify(api, "ann@example.com", _code_sent_to(ann), device_name="Ann's Pixel")

    assert reply.status_code == 201
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reply.json()['token']}")
    profile = client.get("/api/v1/me/")
    assert profile.status_code == 200 and profile.json()["id"] == ann.pk
    assert MemberToken.objects.get(pk=reply.json()["token_id"]).name == "Ann's Pixel"


def test_only_a_hash_of_the_code_and_of_the_token_is_stored(api, ann):
    _ask(api, "ann@example.com")
    code = _code_sent_to(ann)
    token = _verify(api, "ann@example.com", code).json()["token"]

    assert code not in SignInCode.objects.get().code_hash
    assert not MemberToken.objects.filter(key_hash=token).exists()


def test_a_wrong_code_is_refused_and_counts_an_attempt(api, ann):
    _ask(api, "ann@example.com")
    wrong = "000000" if _code_sent_to(ann) != "000000" else "111111"

    reply = _verify(api, "ann@example.com", wrong)

    assert reply.status_code == 400 and reply.json()["code"] == "invalid_code"
    assert SignInCode.objects.get().attempts == 1
    assert not MemberToken.objects.exists()


def test_after_five_wrong_tries_even_the_right_code_is_refused(api, ann):
    _ask(api, "ann@example.com")
    code = _code_sent_to(ann)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        _verify(api, "ann@example.com", wrong)

    reply = _verify(api, "ann@example.com", code)

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_attempts"


def test_an_expired_code_is_refused(api, ann):
    _ask(api, "ann@example.com")
    SignInCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    reply = _verify(api, "ann@example.com", _code_sent_to(ann))

    assert reply.status_code == 400 and reply.json()["code"] == "expired_code"


def test_a_code_signs_in_once(api, ann):
    _ask(api, "ann@example.com")
    code = _code_sent_to(ann)
    _verify(api, "ann@example.com", code)

    reply = _verify(api, "ann@example.com", code)

    assert reply.status_code == 400 and reply.json()["code"] == "invalid_code"


def test_the_sixth_code_for_an_address_within_an_hour_is_refused_with_retry_after(api, ann):
    for n in range(5):
        assert _ask(api, "ann@example.com", ip=f"203.0.113.{n}").status_code == 202

    reply = _ask(api, "ann@example.com", ip="203.0.113.99")

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_codes"
    assert 0 < int(reply["Retry-After"]) <= 3600


def test_one_ip_address_asking_for_many_addresses_is_limited(api, settings):
    settings.ENGAGE_SIGN_IN_CODES_PER_IP = 3
    for n in range(3):
        _ask(api, f"someone{n}@example.com")

    reply = _ask(api, "someone9@example.com")

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_codes"


def test_one_ip_address_guessing_codes_is_stopped(api, ann, settings):
    settings.ENGAGE_SIGN_IN_FAILURES_PER_IP = 2
    _ask(api, "ann@example.com")
    code = _code_sent_to(ann)
    wrong = "000000" if code != "000000" else "111111"
    _verify(api, "ann@example.com", wrong)
    _verify(api, "ann@example.com", wrong)

    reply = _verify(api, "ann@example.com", code)

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_attempts"


def test_a_suspended_member_gets_no_code(api):
    MemberFactory(email="gone@example.com", status="blocked")

    _ask(api, "gone@example.com")

    assert not Message.objects.filter(content__kind="sign_in_code").exists()


def test_a_revoked_token_is_refused(api, ann):
    client = _signed_in(api, ann)
    client.post("/api/v1/me/sign-out/")

    reply = client.get("/api/v1/me/")

    assert reply.status_code == 401


def test_a_tokens_last_use_is_written_once_per_resolution_not_on_every_call(api, ann):
    client = _signed_in(api, ann)
    client.get("/api/v1/me/")
    token = MemberToken.objects.get(member=ann)
    first_use = token.last_used_at

    client.get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used_at == first_use

    MemberToken.objects.filter(pk=token.pk).update(
        last_used_at=first_use - TOKEN_LAST_USED_RESOLUTION - timedelta(seconds=1))
    client.get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used_at > first_use


def test_a_member_lists_their_devices_and_signs_one_out(api, ann):
    phone = _signed_in(api, ann)
    tablet = _signed_in(api, ann)
    tokens = phone.get("/api/v1/me/tokens/").json()
    tablet_id = next(t["id"] for t in tokens if not t["current"])

    assert phone.delete(f"/api/v1/me/tokens/{tablet_id}/").status_code == 204
    assert tablet.get("/api/v1/me/").status_code == 401
    assert phone.get("/api/v1/me/").status_code == 200


def test_a_member_cannot_revoke_another_members_token(api, ann):
    bob = MemberFactory(email="bob@example.com")
    ann_client = _signed_in(api, ann)
    _signed_in(api, bob, "bob@example.com")
    bobs_token = MemberToken.objects.get(member=bob)

    reply = ann_client.delete(f"/api/v1/me/tokens/{bobs_token.pk}/")

    assert reply.status_code == 404
    assert MemberToken.objects.get(pk=bobs_token.pk).revoked_at is None


def test_a_member_token_opens_no_staff_endpoint(api, ann):
    client = _signed_in(api, ann)

    assert client.get("/api/v1/members/").status_code == 403


def test_a_staff_session_is_not_a_member(marketer_client):
    reply = marketer_client.get("/api/v1/me/")

    assert reply.status_code == 401 and reply["WWW-Authenticate"] == "Bearer"


def test_a_member_changes_their_language(api, ann):
    client = _signed_in(api, ann)

    reply = client.patch("/api/v1/me/", {"language": "ru"}, format="json")

    assert reply.status_code == 200 and reply.json()["language"] == "ru"


def test_a_member_cannot_change_the_email_they_sign_in_with_here(api, ann):
    client = _signed_in(api, ann)

    reply = client.patch("/api/v1/me/", {"email": "mallory@example.com"}, format="json")

    assert reply.status_code == 400 and "email" in reply.json()
    ann.refresh_from_db()
    assert ann.email == "ann@example.com"


def test_the_home_call_gives_the_profile(api, ann):
    client = _signed_in(api, ann)

    reply = client.get("/api/v1/me/home/")

    assert reply.status_code == 200 and reply.json()["profile"]["email"] == "ann@example.com"
