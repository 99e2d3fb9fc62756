"""The staff second factor (django-otp TOTP, config/staff_auth.py): with ENGAGE_STAFF_2FA on,
the admin and the staff API need a session that passed it; off, a password is enough."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"
MEMBERS_API = "/api/v1/members/"


@pytest.fixture
def two_factor(settings):
    settings.ENGAGE_STAFF_2FA = True


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="marketer", password=PASSWORD,
                                                 is_staff=True, is_superuser=True)


@pytest.fixture
def device(staff):
    return TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)


def _current_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def _wrong_code(device: TOTPDevice) -> str:
    code = _current_code(device)
    return "000000" if code != "000000" else "111111"


def _log_in(client, **extra: str):
    return client.post(reverse("admin:login"), {"username": "marketer", "password": PASSWORD,
                                                "next": reverse("admin:index"), **extra})


def test_staff_with_a_device_and_its_current_code_get_into_the_admin(client, two_factor,
                                                                       device):
    reply = _log_in(client, otp_token=_current_code(device))

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_wrong_code_is_refused(client, two_factor, device):
    reply = _log_in(client, otp_token=_wrong_code(device))

    assert reply.status_code == 200
    assert "Enter the current code of your authenticator app." in reply.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


def test_a_password_without_the_code_is_refused_for_a_user_with_a_device(client, two_factor,
                                                                         device):
    reply = _log_in(client)

    assert reply.status_code == 200
    assert client.get(reverse("admin:index")).status_code == 302


def test_wrong_codes_count_toward_the_login_lockout(client, two_factor, device):
    statuses = [_log_in(client, otp_token=_wrong_code(device)).status_code for _ in range(5)]

    assert statuses == [200, 200, 200, 200, 429]


def test_a_staff_user_without_a_device_is_led_to_set_one_up(client, two_factor, staff):
    reply = _log_in(client)

    assert reply.status_code == 302
    assert reply["Location"] == reverse("admin:staff_2fa_setup")


def test_a_session_without_the_second_factor_is_kept_out_of_the_admin(client, two_factor,
                                                                       staff):
    _log_in(client)

    reply = client.get(reverse("admin:index"))

    assert reply.status_code == 302 and reply["Location"].startswith(reverse("admin:login"))


def test_a_session_without_the_second_factor_is_anonymous_to_the_staff_api(client,
                                                                          two_factor, staff):
    client.force_login(staff)

    assert client.get(MEMBERS_API).status_code in (401, 403)


def test_the_setup_page_shows_the_key_as_text_and_as_a_qr_code(client, two_factor, staff):
    _log_in(client)

    page = client.get(reverse("admin:staff_2fa_setup"))

    device = TOTPDevice.objects.get(user=staff)
    body = page.content.decode()
    assert page.status_code == 200 and not device.confirmed
    assert device.config_url.replace("&", "&amp;") in body
    assert "<svg" in body


def test_setting_up_with_the_apps_code_confirms_the_device_and_opens_the_admin(
        client, two_factor, staff):
    _log_in(client)
    client.get(reverse("admin:staff_2fa_setup"))
    device = TOTPDevice.objects.get(user=staff)

    reply = client.post(reverse("admin:staff_2fa_setup"), {"otp_token": _current_code(device)})

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:index")
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(MEMBERS_API).status_code == 200


def test_setting_up_with_a_wrong_code_leaves_the_device_unconfirmed(client, two_factor, staff):
    _log_in(client)
    client.get(reverse("admin:staff_2fa_setup"))
    device = TOTPDevice.objects.get(user=staff)

    reply = client.post(reverse("admin:staff_2fa_setup"), {"otp_token": _wrong_code(device)})

    assert reply.status_code == 400
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
    assert client.get(reverse("admin:index")).status_code == 302


def test_the_setup_page_never_replaces_a_confirmed_device(client, two_factor, staff, device):
    client.force_login(staff)

    reply = client.get(reverse("admin:staff_2fa_setup"))

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:login")
    assert list(TOTPDevice.objects.filter(user=staff)) == [device]


def test_the_setup_page_is_only_for_signed_in_staff(client, two_factor):
    reply = client.get(reverse("admin:staff_2fa_setup"))

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:login")
    assert not TOTPDevice.objects.exists()


def test_without_the_setting_a_password_opens_the_admin(client, settings, staff):
    settings.ENGAGE_STAFF_2FA = False

    reply = _log_in(client)

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200


def test_without_the_setting_the_login_asks_for_no_code(client, settings):
    settings.ENGAGE_STAFF_2FA = False

    page = client.get(reverse("admin:login"))

    assert 'name="otp_token"' not in page.content.decode()


def test_with_the_setting_the_login_asks_for_the_code(client, two_factor):
    page = client.get(reverse("admin:login"))

    assert 'name="otp_token"' in page.content.decode()


def test_logging_out_from_the_setup_page_ends_the_session(client, two_factor, staff):
    _log_in(client)

    reply = client.post(reverse("admin:staff_2fa_setup"), {"log_out": "1"})

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:login")
    assert "_auth_user_id" not in client.session
