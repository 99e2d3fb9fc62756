from __future__ import annotations

import pytest

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.models import WebhookDelivery
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.ssrf import UnsafeUrl, url_check_public
from tests.loyalty.webhooks_support import event_record, receiver, subscribe  # noqa: F401
from tests.members.factories import MemberFactory

BAD_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://localhost/hook",
    "http://10.0.0.5/hook",
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://0x7f000001/hook",
    "http://[2002:7f00:1::]/hook",
    "ftp://example.com/hook",
    "http:///hook",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_url_inside_a_private_network_is_refused(url, settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    with pytest.raises(UnsafeUrl):
        url_check_public(url)


def test_url_on_a_public_address_is_allowed(settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    url_check_public("https://93.184.215.14/hook")


def test_loopback_url_is_allowed_when_private_receivers_are(settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True

    url_check_public("http://127.0.0.1:8000/hook")


@pytest.mark.django_db
def test_delivery_to_a_url_now_resolving_privately_is_refused_and_retried(receiver,  # noqa: F811
                                                                           settings):
    # given: saved while allowed, refused by the time it is called (as after DNS rebinding)
    subscribe(receiver)
    event_record(MemberFactory())
    webhooks_relay_pass()
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    # when
    deliveries_send_due()

    # then
    delivery = WebhookDelivery.objects.get()
    assert receiver.calls == []
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempt_log.get().error.startswith("refused:")
