"""Webhook URLs that reach inside the network (SSRF) are refused at every door: the guard
itself, the staff API and the admin form when a subscription is saved, and the delivery when
the URL is called (a row saved before, a name re-pointed since, a redirect answered).

Names that resolve inside the network are served by a stand-in resolver: `socket.getaddrinfo`
(the operating system's call, which both the guard and aiohttp's resolver go through) answers
for a few `.partner.example` names and passes anything else to the real one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.services import subscription_create
from loyalty.webhooks.ssrf import UnsafeUrl, url_check_public
from tests.loyalty.webhooks_support import event_record, receiver  # noqa: F401
from tests.members.factories import MemberFactory
from tests.peers.redirecting_http import RedirectingPeer

PUBLIC = "93.184.215.14"
FAKE_DNS = {
    "example.com": [PUBLIC],
    "public.partner.example": [PUBLIC],
    "hooks.partner.example": ["10.20.30.40"],
    "metadata.partner.example": ["169.254.169.254"],
    "v6only.partner.example": ["fd12:3456::1"],
    # One public address among private ones: the client may connect to any of them.
    "mixed.partner.example": [PUBLIC, "192.168.0.10"],
    "loopback.partner.example": ["127.0.0.1"],
}

SSRF_URLS = [
    # loopback, in every spelling the resolver accepts
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "http://127.255.255.254/hook",
    "http://localhost/hook",
    "http://LOCALHOST:8000/hook",
    "http://localhost./hook",
    "http://app.localhost/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://017700000001/hook",
    "http://0x7f.1/hook",
    "http://0x7f000001/hook",
    "http://127.1/hook",
    "http://127.000.000.001/hook",
    "http://[::1]/hook",
    "http://[0:0:0:0:0:0:0:1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://[2002:7f00:1::]/hook",
    # private networks (RFC 1918, unique local IPv6) and CGNAT
    "http://10.1.2.3/hook",
    "https://10.0.0.1:8443/hook",
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://[fd00::1]/hook",
    "http://[fc00::1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://100.64.0.1/hook",
    # link-local, the cloud metadata service among them
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[fe80::1]/hook",
    # unspecified, multicast, reserved, broadcast, benchmarking
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://198.18.0.1/hook",
    # userinfo and parser tricks: the host the client connects to is a private one
    "http://example.com@127.0.0.1/hook",
    "http://user:pass@10.0.0.1/hook",
    "http://127.0.0.1#@example.com/hook",
    "http://127.0.0.1:80\\@example.com/hook",
    "http://\u2460\u2461\u2466.0.0.1/hook",
    "http://127\u30020\u30020\u30021/hook",
    # names that resolve inside the network
    "http://hooks.partner.example/hook",
    "http://metadata.partner.example/latest/meta-data/",
    "http://v6only.partner.example/hook",
    "http://mixed.partner.example/hook",
    "http://hooks.partner.example./hook",
    # not http at all
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "http:///hook",
]


def _fake_getaddrinfo(real):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        name = host.decode() if isinstance(host, bytes) else host
        addresses = FAKE_DNS.get((name or "").lower().rstrip("."))
        if addresses is None:
            return real(host, port, family, type, proto, flags)
        answers = []
        for address in addresses:
            v6 = ":" in address
            if family not in (0, socket.AF_UNSPEC) and family != (
                    socket.AF_INET6 if v6 else socket.AF_INET):
                continue
            sockaddr = (address, port or 0, 0, 0) if v6 else (address, port or 0)
            answers.append((socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM,
                            socket.IPPROTO_TCP, "", sockaddr))
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers
    return getaddrinfo


@pytest.fixture
def fake_dns(monkeypatch) -> Iterator[None]:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo(socket.getaddrinfo))
    yield


@pytest.fixture
def private_refused(settings, fake_dns) -> None:
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False


def test_the_corpus_is_about_forty_urls():
    assert len(SSRF_URLS) >= 40
    assert len(set(SSRF_URLS)) == len(SSRF_URLS)


@pytest.mark.parametrize("url", SSRF_URLS)
def test_the_guard_refuses_the_url(url, private_refused):
    with pytest.raises(UnsafeUrl):
        url_check_public(url)


@pytest.mark.parametrize("url", ["https://public.partner.example/hook",
                                 f"http://{PUBLIC}:8080/hook",
                                 "https://user@public.partner.example/hook"])
def test_the_guard_allows_a_public_url(url, private_refused):
    url_check_public(url)


@pytest.mark.django_db
@pytest.mark.parametrize("url", SSRF_URLS)
def test_the_staff_api_refuses_the_url_as_a_field_error(url, private_refused, marketer):
    client = APIClient()
    client.force_authenticate(marketer)

    response = client.post("/api/v1/webhooks/", {"url": url}, format="json")

    assert response.status_code == 400
    assert "url" in response.json()
    assert not WebhookSubscription.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", SSRF_URLS)
def test_the_admin_form_refuses_the_url_as_a_field_error(url, private_refused, marketer_client):
    response = marketer_client.post("/admin/loyalty/webhooksubscription/add/", {
        "url": url, "connector": "standard", "description": "x", "active": "on"})

    assert response.status_code == 200
    assert "url" in response.context["adminform"].form.errors
    assert not WebhookSubscription.objects.exists()


@pytest.mark.django_db
def test_deliveries_to_saved_urls_inside_the_network_are_refused_before_any_call(
        settings, fake_dns):
    # given: one subscription per http(s) URL of the corpus, stored as an older rule or a
    # since re-pointed name would have left them (written past the save-time check)
    urls = [url for url in SSRF_URLS if url.startswith(("http://", "https://"))
            and url != "http:///hook"]
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    for url in urls:
        subscription, _ = subscription_create(url="https://public.partner.example/hook")
        WebhookSubscription.objects.filter(pk=subscription.pk).update(url=url)
    event_record(MemberFactory())
    webhooks_relay_pass()
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    # when
    deliveries_send_due()

    # then: no call was made (a refused attempt has no request, so no status and no time)
    attempts = {delivery.subscription.url: delivery.attempt_log.get()
                for delivery in WebhookDelivery.objects.select_related("subscription")}
    assert len(attempts) == len(urls)
    called = {url: attempt.error for url, attempt in attempts.items()
              if not attempt.error.startswith("refused:") or attempt.status_code is not None}
    assert called == {}


def _one_delivery_attempt(url: str, settings) -> WebhookDelivery:
    """Subscribe `url` (private receivers allowed, as the receiver is on loopback), record an
    event, then send it with private addresses refused."""
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    subscription_create(url=url)
    event_record(MemberFactory())
    webhooks_relay_pass()
    return WebhookDelivery.objects.get()


@pytest.mark.django_db
def test_a_name_re_pointed_inside_the_network_after_the_check_is_refused_at_connect(
        settings, fake_dns, receiver, monkeypatch):  # noqa: F811
    # given: the name answers a public address to the URL check, then the receiver's
    # (loopback) to the connection, as a rebinding DNS server does
    delivery = _one_delivery_attempt(f"http://rebind.partner.example:{receiver.port}/hook",
                                     settings)
    answers = iter([[PUBLIC]])
    resolve = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if str(host).rstrip(".") == "rebind.partner.example":
            FAKE_DNS["rebind.partner.example"] = next(answers, ["127.0.0.1"])
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setitem(FAKE_DNS, "rebind.partner.example", [PUBLIC])
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    # when
    deliveries_send_due()

    # then: the URL check passed, the connection's own resolution refused
    attempt = delivery.attempt_log.get()
    assert receiver.calls == []
    assert attempt.status_code is None
    assert not attempt.error.startswith("refused:")
    assert "rebind.partner.example" in attempt.error


@pytest.mark.django_db
def test_the_stand_in_resolver_reaches_the_client_when_private_receivers_are_allowed(
        settings, fake_dns, receiver, monkeypatch):  # noqa: F811
    # The control of the test above: the same name, allowed, is called.
    monkeypatch.setitem(FAKE_DNS, "rebind.partner.example", ["127.0.0.1"])
    delivery = _one_delivery_attempt(f"http://rebind.partner.example:{receiver.port}/hook",
                                     settings)

    deliveries_send_due()

    # (the receiver answers 401: it was not told this subscription's secret)
    assert delivery.attempt_log.get().status_code is not None
    assert len(receiver.calls) == 1


@pytest.mark.django_db
def test_a_redirect_to_an_address_inside_the_network_is_not_followed(settings, receiver):  # noqa: F811
    # given: a receiver that answers 302 to another one, standing for an inner address
    # (both on loopback, so private receivers are allowed: the redirect alone is judged)
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    redirector = RedirectingPeer(location=receiver.hook_url).start()
    try:
        subscription_create(url=redirector.hook_url)
        event_record(MemberFactory())
        webhooks_relay_pass()

        # when
        deliveries_send_due()
    finally:
        redirector.stop()

    # then
    delivery = WebhookDelivery.objects.get()
    assert redirector.requests == ["POST /hook"]
    assert receiver.calls == []
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_status_code == 302


@pytest.mark.django_db
def test_a_redirect_to_the_metadata_service_is_not_followed(settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    redirector = RedirectingPeer(location="http://169.254.169.254/latest/meta-data/",
                                 status=307).start()
    try:
        subscription_create(url=redirector.hook_url)
        event_record(MemberFactory())
        webhooks_relay_pass()

        deliveries_send_due()
    finally:
        redirector.stop()

    delivery = WebhookDelivery.objects.get()
    assert redirector.requests == ["POST /hook"]
    assert delivery.last_status_code == 307
    assert delivery.attempt_log.get().error == ""
