"""CSRF: every view Django's CSRF middleware does not check is listed here with what
authenticates it instead, and a call without that credential is refused.

The URL resolver is walked whole, so a new csrf_exempt view fails this suite until it is added
to an allow-list below with its probe. DRF views are all csrf_exempt at Django's level (DRF does
the check itself, in SessionAuthentication); for them the rule is about their authentication
classes: a cookie-reading class must enforce CSRF, every other class must read a credential
the browser does not attach on its own, and a view with none must be on the anonymous list.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.views import APIView

from loyalty.integration.authentication import ApiKeyAuthentication
from members.authentication import (
    SESSION_KEY,
    MemberSessionAuthentication,
    MemberTokenAuthentication,
)
from members.unsubscribe import unsubscribe_token
from tests.communications.factories import GatewayFactory
from tests.members.factories import MemberFactory

# Cookie-reading classes: each calls DRF's enforce_csrf once it has found a session user.
CSRF_CHECKING_AUTHENTICATION = {SessionAuthentication, MemberSessionAuthentication}
# Credentials sent in a header the caller sets on purpose: a cross-site form cannot.
HEADER_AUTHENTICATION = {
    BasicAuthentication: "Authorization: Basic (staff user and password)",
    MemberTokenAuthentication: "Authorization: Bearer (a member's app token)",
    ApiKeyAuthentication: "an integration API key",
}
# DRF views that authenticate nobody: they read no cookie, so a forged request carries nothing.
ANONYMOUS_API_VIEWS = {
    # Asks for a one-time code (rate-limited per address and IP); changes no signed-in state.
    "members.api_me.SignInRequestView": "anonymous by design, rate-limited",
    # Trades the code for a token returned in the body, which a cross-site page cannot read.
    "members.api_me.SignInVerifyView": "the one-time code",
}
# Plain Django views exempt from the CSRF middleware, and what authenticates each.
EXEMPT_VIEWS = {
    "members.views.unsubscribe": "the signed unsubscribe token in the URL (RFC 8058 one-click)",
    "communications.webhooks.sms_inbound": "HMAC of the body with the gateway's inbound_secret",
    "communications.webhooks.receipts_inbound": "HMAC of the body with the gateway's "
                                                "inbound_secret",
    "communications.webhooks_http_sms.twilio_status": "X-Twilio-Signature (auth token)",
    "communications.webhooks_http_sms.http_sms_receipts": "HMAC with the gateway's "
                                                          "inbound_secret",
    "communications.webhooks_messengers.viber_callback": "X-Viber-Content-Signature "
                                                         "(auth token)",
    "communications.webhooks_push.hms_receipts": "Push Kit's signed callback header",
}
# django-anymail's tracking webhooks, one per email service: ANYMAIL_WEBHOOK_SECRET as HTTP
# basic auth (and the service's own signature where it has one).
ANYMAIL_MODULE = "anymail.webhooks."


def _patterns(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def _view_class(callback: Callable) -> type | None:
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def _name(callback: Callable) -> str:
    view_class = _view_class(callback)
    if view_class is not None:
        return f"{view_class.__module__}.{view_class.__qualname__}"
    return f"{callback.__module__}.{callback.__qualname__}"


def _exempt() -> list[tuple[str, Callable]]:
    return [(route, entry.callback) for route, entry in _patterns(get_resolver().url_patterns)
            if getattr(entry.callback, "csrf_exempt", False)]


def _api_views() -> list[tuple[str, type[APIView]]]:
    return [(route, _view_class(callback)) for route, callback in _exempt()
            if isinstance(_view_class(callback), type)
            and issubclass(_view_class(callback), APIView)]


def _plain_exempt_views() -> dict[str, str]:
    """name -> route of each exempt view that is not DRF's nor anymail's."""
    found = {}
    for route, callback in _exempt():
        view_class = _view_class(callback)
        if isinstance(view_class, type) and issubclass(view_class, APIView):
            continue
        if _name(callback).startswith(ANYMAIL_MODULE):
            continue
        found[_name(callback)] = route
    return found


def test_the_csrf_exempt_views_are_exactly_the_allow_list():
    assert set(_plain_exempt_views()) == set(EXEMPT_VIEWS)


def test_every_api_view_reads_only_csrf_checked_cookies_or_header_credentials():
    unknown = {(route, cls.__name__, auth.__name__)
               for route, cls in _api_views() for auth in cls.authentication_classes
               if auth not in CSRF_CHECKING_AUTHENTICATION and auth not in HEADER_AUTHENTICATION}

    assert unknown == set()


def test_the_api_views_without_authentication_are_exactly_the_anonymous_list():
    anonymous = {f"{cls.__module__}.{cls.__qualname__}" for _, cls in _api_views()
                 if not cls.authentication_classes}

    assert anonymous == set(ANONYMOUS_API_VIEWS)


def test_the_anymail_routes_are_only_tracking_webhooks():
    routes = [route for route, callback in _exempt() if _name(callback).startswith(ANYMAIL_MODULE)]

    assert routes and all(route.startswith("hooks/anymail/") for route in routes)


# --- each exemption refuses a call without its credential -------------------------------------

SMS_SETTINGS = {"url": "http://127.0.0.1:9/send", "inbound_secret": "a-secret"}


def _unsubscribe(client: Client) -> int:
    """A real member's token with its signature altered: the one-click POST must not act."""
    token = unsubscribe_token(member_id=MemberFactory().pk, channel="email")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    return client.post(f"/u/{tampered}/", {"List-Unsubscribe": "One-Click"}).status_code


def _gateway_hook(name: str, **gateway: object) -> Callable[[Client], int]:
    def probe(client: Client) -> int:
        row = GatewayFactory(**gateway)
        return client.post(reverse(name, args=[row.pk]), b"{}",
                           content_type="application/json").status_code
    return probe


PROBES: dict[str, Callable[[Client], int]] = {
    "members.views.unsubscribe": _unsubscribe,
    "communications.webhooks.sms_inbound": _gateway_hook(
        "sms-inbound", channel="sms", provider="http_sms", settings=SMS_SETTINGS),
    "communications.webhooks.receipts_inbound": _gateway_hook(
        "gateway-receipts", settings={"host": "127.0.0.1", "port": 25,
                                      "inbound_secret": "a-secret"}),
    "communications.webhooks_http_sms.twilio_status": _gateway_hook(
        "twilio-status", channel="sms", provider="twilio",
        settings={"account_sid": "AC0123", "auth_token": "a-token"}),
    "communications.webhooks_http_sms.http_sms_receipts": _gateway_hook(
        "http-sms-receipts", channel="sms", provider="http_sms", settings=SMS_SETTINGS),
    "communications.webhooks_messengers.viber_callback": _gateway_hook(
        "viber-callback", channel="viber", provider="viber", settings={"auth_token": "a-token"}),
    "communications.webhooks_push.hms_receipts": _gateway_hook(
        "hms-receipts", channel="push", provider="hms",
        settings={"callback_user": "engage", "inbound_secret": "a-secret"}),
}


def test_every_exempt_view_has_a_probe():
    assert set(PROBES) == set(EXEMPT_VIEWS)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(EXEMPT_VIEWS))
def test_an_exempt_view_refuses_a_call_without_its_credential(name):
    status = PROBES[name](Client())

    # The gateways exist, so only the credential check answers 401/403; a tampered unsubscribe
    # token names no member (404).
    expected = (404,) if name == "members.views.unsubscribe" else (401, 403)
    assert status in expected, f"{name} answered {status} to a call without " \
                               f"{EXEMPT_VIEWS[name]}"


@pytest.mark.django_db
def test_the_anymail_webhooks_refuse_a_call_without_the_basic_auth_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "engage:a-long-webhook-secret"}
    # Amazon SES's view cannot even start without boto3 (a 500, not an acceptance).
    client = Client(raise_request_exception=False)
    routes = [route for route, callback in _exempt() if _name(callback).startswith(ANYMAIL_MODULE)]
    wrong = base64.b64encode(b"engage:wrong").decode()

    statuses = {route: (client.post("/" + route, b"{}", content_type="application/json")
                        .status_code,
                        client.post("/" + route, b"{}", content_type="application/json",
                                    HTTP_AUTHORIZATION=f"Basic {wrong}").status_code)
                for route in routes}

    accepted = {route: pair for route, pair in statuses.items()
                if any(code < 400 for code in pair)}
    assert accepted == {}


# --- cookie-authenticated calls need the CSRF token ---------------------------------------------

@pytest.mark.django_db
def test_a_staff_session_post_to_the_api_without_a_csrf_token_is_refused(marketer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)

    reply = client.post("/api/v1/suppressions/", {"channel": "email",
                                                  "address": "x@example.com"})

    assert reply.status_code == 403 and "CSRF" in reply.json()["detail"]


@pytest.mark.django_db
def test_a_member_session_post_to_the_api_without_a_csrf_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    session = client.session
    session[SESSION_KEY] = MemberFactory().pk
    session.save()

    reply = client.post("/api/v1/me/sign-out/")

    assert reply.status_code == 403 and "CSRF" in reply.json()["detail"]


@pytest.mark.django_db
def test_an_admin_form_post_without_a_csrf_token_is_refused(marketer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)

    reply = client.post(reverse("admin:members_subscriptioncategory_add"), {"name": "x"})

    assert reply.status_code == 403
