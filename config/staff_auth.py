"""Staff sign-in: lockout after repeated failures, and a TOTP second factor.

Lockout is django-axes (settings: ENGAGE_STAFF_LOGIN_ATTEMPTS, ENGAGE_STAFF_LOGIN_COOLOFF):
failures are counted per username and address; a locked pair's login answers 429 with
Retry-After (`lockout_response`), even with the right password, until the cool-off has passed
since its last failure.

The second factor is django-otp's TOTP device, required when ENGAGE_STAFF_2FA is on:
- the admin login form asks for the code of a staff user's confirmed device
  (`StaffLoginForm`); a wrong code counts as a failed login for the lockout;
- a session that signed in without passing it (a staff user with no device yet, or one signed
  in before the setting was turned on) is anonymous everywhere (`SecondFactorMiddleware`): the
  admin, and the API's session authentication, never see its user;
- the one place such a session's user is seen is the setup page (`second_factor_setup`),
  where a staff user with no device adds one and is signed in with it.

Imported lazily by config/admin_site.py, which is loaded before the app registry is ready.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

logger = logging.getLogger(__name__)

SETUP_URL_NAME = "staff_2fa_setup"
# The device a staff user adds on the setup page; one per user.
DEVICE_NAME = "Authenticator app"


# --- lockout ---------------------------------------------------------------------------------

class StaffLockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out username and address before any password is checked.

    An `authenticate()` without a request (Django's test client `login()`, a shell) has no
    address to count against and is let through to the next backend; every HTTP login path
    (the admin form, the API's basic authentication) passes its request.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address the proxy in front of Engage reported (REMOTE_ADDR); a header the client
    sets itself, such as X-Forwarded-For, would let it pick a fresh address per attempt."""
    return request.META.get("REMOTE_ADDR") or None


@receiver(user_locked_out)
def _lockout_reaches_the_middleware(sender: Any, request: Any = None, **kwargs: Any) -> None:
    """The API's basic authentication hands axes DRF's request, so the lock flag lands there;
    copied to Django's request, AxesMiddleware answers the API call with 429 too.

    Connected when this module is imported: by the middleware list, before any request."""
    django_request = getattr(request, "_request", None)
    if isinstance(django_request, HttpRequest):
        django_request.axes_locked_out = True
        django_request.axes_credentials = getattr(request, "axes_credentials", None)


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """429 with Retry-After: the failure that led here restarted the cool-off (axes' default,
    AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so the whole cool-off is what is left."""
    cool_off = get_cool_off(request)
    seconds = max(1, int(cool_off.total_seconds())) if cool_off else 3600
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {"code": "too_many_attempts",
             "detail": "too many failed logins for this user from this address; try again "
                       "later"}, status=429)
    else:
        response = render(request, "admin/staff_lockout.html",
                          {"minutes": (seconds + 59) // 60, "site_header": "Engage",
                           "title": "Too many failed logins"},
                          status=429)
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response


# --- second factor ---------------------------------------------------------------------------

def second_factor_required() -> bool:
    return settings.ENGAGE_STAFF_2FA


def _confirmed_device(user: User):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return (TOTPDevice.objects.devices_for_user(user, confirmed=True)
            .order_by("pk").first())


class StaffLoginForm(AdminAuthenticationForm):
    """The admin login; with ENGAGE_STAFF_2FA on, also the code of the user's TOTP device."""

    otp_token = forms.CharField(
        label="Authenticator code", required=False, max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="The 6-digit code your authenticator app shows. Leave it empty if you have "
                  "not set one up yet.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not second_factor_required():
            del self.fields["otp_token"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.get_user()
        if not second_factor_required() or user is None:
            return cleaned
        device = _confirmed_device(user)
        if device is None:
            # Signed in with the password only: a session the middleware keeps anonymous, good
            # for nothing but the setup page the admin's login leads to next.
            return cleaned
        token = (cleaned.get("otp_token") or "").strip()
        if not token or not device.verify_token(token):
            # Counted as a failed login, so guessing codes with a known password locks the
            # pair out like guessing passwords; the device's own throttling slows it too.
            user_login_failed.send(sender=__name__,
                                   credentials={"username": user.get_username()},
                                   request=self.request)
            raise ValidationError("Enter the current code of your authenticator app.",
                                  code="invalid_otp_token")
        # django-otp's user_logged_in handler stores it in the session as verified.
        user.otp_device = device
        return cleaned


def _verified_or_anonymous(user: Any) -> Any:
    if user.is_authenticated and not user.is_verified():
        return AnonymousUser()
    return user


class SecondFactorMiddleware:
    """With ENGAGE_STAFF_2FA on, a session signed in without the second factor is anonymous,
    except on the setup page. After django_otp's OTPMiddleware, which adds `is_verified()`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.setup_path = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not second_factor_required():
            return self.get_response(request)
        if not self.setup_path:
            self.setup_path = reverse(f"admin:{SETUP_URL_NAME}")
        if request.path != self.setup_path:
            user = request.user
            # Lazy, as Django's and django-otp's are: a request that never looks at its user
            # (the member API, the public pages) loads no session user for this.
            request.user = SimpleLazyObject(lambda: _verified_or_anonymous(user))
        return self.get_response(request)


def after_login(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """The admin login's answer: a staff user signed in with no device yet goes to set one up
    instead of to the admin, which would only send them back to the login."""
    if (second_factor_required() and request.method == "POST" and response.status_code == 302
            and request.user.is_authenticated and request.user.is_staff
            and getattr(request.user, "otp_device", None) is None):
        return redirect(f"admin:{SETUP_URL_NAME}")
    return response


class SetupForm(forms.Form):
    otp_token = forms.CharField(
        label="Code from your authenticator app", max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                      "autofocus": True}))


def _qr_svg(uri: str) -> str:
    import qrcode
    import qrcode.image.svg

    return qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage).to_string(
        encoding="unicode")


@sensitive_post_parameters("otp_token")
@never_cache
def second_factor_setup(request: HttpRequest, site: Any) -> HttpResponse:
    """A signed-in staff user with no confirmed device adds a TOTP device: the key is shown as
    a QR code, as text and as an otpauth URI; a correct code from the app confirms the device
    and signs the session in with it."""
    from django_otp import login as otp_login
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = request.user
    if not second_factor_required() or not (user.is_authenticated and user.is_active
                                            and user.is_staff):
        return redirect("admin:login")
    if request.method == "POST" and "log_out" in request.POST:
        # The admin's own logout is an admin view, closed to a session without the factor.
        auth_logout(request)
        return redirect("admin:login")
    if _confirmed_device(user) is not None:
        # A device already exists: this page never replaces one (that is a superuser's removal
        # of the device in the admin), and the login asks for its code.
        return redirect("admin:login")
    device = (TOTPDevice.objects.devices_for_user(user, confirmed=False).order_by("pk").first()
              or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False))
    form = SetupForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        if device.verify_token(form.cleaned_data["otp_token"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            logger.info("staff user %s set up a second factor", user.pk)
            return redirect("admin:index")
        form.add_error("otp_token", "This code is not the one your app shows now; try the "
                                    "next one.")
    uri = device.config_url
    context = {
        **site.each_context(request),
        "title": "Set up your second factor",
        "form": form,
        "secret": base64.b32encode(device.bin_key).decode(),
        "otpauth_uri": uri,
        "qr_svg": _qr_svg(uri),
    }
    return render(request, "admin/staff_2fa_setup.html", context,
                  status=400 if form.errors else 200)


def second_factor_passed(request: HttpRequest) -> bool:
    """Whether the admin may let this session's staff user in as far as the second factor
    goes (the admin site's has_permission; SecondFactorMiddleware already hides such a user
    everywhere but the setup page)."""
    if not second_factor_required():
        return True
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())
