from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from communications.models import Gateway
from communications.services.gateways import gateway_health_check
from communications.tasks import check_gateways_health
from config.celery import app as celery_app
from tests.communications.factories import GatewayFactory
from tests.peers.fcm import FcmPeer
from tests.peers.smpp import ESME_RINVPASWD, SmppPeer
from tests.peers.smtp import free_port
from tests.peers.smtp_auth import AuthSmtpPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def smpp_peer() -> Iterator[SmppPeer]:
    peer = SmppPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    peer = FcmPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def auth_smtp_peer() -> Iterator[AuthSmtpPeer]:
    peer = AuthSmtpPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def tasks_run_at_once() -> Iterator[None]:
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def _checked(gateway: Gateway) -> Gateway:
    gateway_health_check(gateway=gateway)
    return Gateway.objects.get(pk=gateway.pk)


# -- SMTP ------------------------------------------------------------------------------------


def test_a_reachable_smtp_server_makes_the_gateway_healthy(smtp_peer):
    gateway = _checked(GatewayFactory(settings=smtp_peer.gateway_settings()))

    assert gateway.last_health_ok is True
    assert gateway.last_health_detail.startswith("connected: ")
    assert gateway.last_health_at is not None
    assert smtp_peer.handler.sessions == 1


def test_an_unreachable_smtp_port_is_recorded_as_a_transient_failure_with_the_reason():
    gateway = _checked(GatewayFactory(settings={"host": "127.0.0.1", "port": free_port(),
                                                "timeout": 2}))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith("transient: cannot connect to SMTP server")


def test_the_smtp_probe_logs_in_with_the_stored_password(auth_smtp_peer):
    gateway = _checked(GatewayFactory(settings=auth_smtp_peer.gateway_settings()))

    assert gateway.last_health_ok is True
    assert gateway.last_health_detail.endswith(", logged in")
    assert auth_smtp_peer.logins == [("engage", auth_smtp_peer.password, True)]


def test_a_wrong_smtp_password_is_recorded_as_a_permanent_failure(auth_smtp_peer):
    gateway = _checked(GatewayFactory(settings={**auth_smtp_peer.gateway_settings(),
                                                "password": "wrong"}))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith(
        "permanent [535]: the SMTP server refused the login: 535")


# -- SMPP ------------------------------------------------------------------------------------


def test_the_smpp_probe_binds_and_unbinds(smpp_peer):
    gateway = _checked(GatewayFactory(channel="sms", provider="smpp",
                                      settings=smpp_peer.gateway_settings()))

    smpp_peer.wait_closed()
    assert gateway.last_health_ok is True
    assert [(bind.system_id, bind.status) for bind in smpp_peer.binds] == [("engage", 0)]
    assert smpp_peer.submits == []


def test_a_bind_refused_for_the_password_is_a_permanent_failure_with_the_smscs_code(smpp_peer):
    gateway = _checked(GatewayFactory(channel="sms", provider="smpp",
                                      settings=smpp_peer.gateway_settings(password="wrong")))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith("permanent [smpp:0x0E]: bind refused")
    assert [bind.status for bind in smpp_peer.binds] == [ESME_RINVPASWD]


def test_an_unreachable_smsc_is_a_transient_failure():
    gateway = _checked(GatewayFactory(channel="sms", provider="smpp", settings={
        "host": "127.0.0.1", "port": free_port(), "system_id": "engage", "source_addr": "Club",
        "timeout": 2}))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith("transient [smpp:connect]")


# -- FCM and the sink ------------------------------------------------------------------------


def test_the_fcm_probe_fetches_a_fresh_oauth_token_every_time(fcm_peer):
    gateway = GatewayFactory(channel="push", provider="fcm",
                             settings=fcm_peer.gateway_settings())

    _checked(gateway)
    gateway = _checked(gateway)

    assert gateway.last_health_ok is True
    assert fcm_peer.token_grants == 2


def test_a_service_account_the_token_endpoint_refuses_fails_the_probe(fcm_peer):
    fcm_peer.script.refuse_grants = True
    gateway = _checked(GatewayFactory(channel="push", provider="fcm",
                                      settings=fcm_peer.gateway_settings()))

    assert gateway.last_health_ok is False
    assert "[oauth_refused]" in gateway.last_health_detail


def test_a_sink_whose_folder_cannot_be_created_is_unhealthy(settings, tmp_path):
    settings.DEBUG = True  # sinks are development-only
    (tmp_path / "a-file").write_text("")
    gateway = _checked(GatewayFactory(provider="file_sink", settings={
        "directory": str(tmp_path / "a-file" / "sink")}))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith("cannot write to the sink folder")


def test_a_sink_with_a_writable_folder_is_healthy(settings, tmp_path):
    settings.DEBUG = True
    gateway = _checked(GatewayFactory(provider="file_sink",
                                      settings={"directory": str(tmp_path)}))

    assert gateway.last_health_ok is True
    assert list((tmp_path / f"gateway-{gateway.pk}").iterdir()) == []


def test_a_sink_is_unhealthy_while_debug_is_off(settings, tmp_path):
    settings.DEBUG = False
    gateway = _checked(GatewayFactory(provider="file_sink",
                                      settings={"directory": str(tmp_path)}))

    assert gateway.last_health_ok is False
    assert gateway.last_health_detail.startswith("permanent [sink_refused]")


# -- schedule and admin -----------------------------------------------------------------------


def test_the_periodic_check_probes_every_active_gateway_and_no_inactive_one(
        smtp_peer, tasks_run_at_once):
    active = GatewayFactory(settings=smtp_peer.gateway_settings())
    inactive = GatewayFactory(settings=smtp_peer.gateway_settings(), is_active=False)

    assert check_gateways_health() == 1

    rows = dict(Gateway.objects.values_list("pk", "last_health_ok"))
    assert (rows[active.pk], rows[inactive.pk]) == (True, None)


def test_the_beat_schedule_runs_the_periodic_check():
    entry = django_settings.CELERY_BEAT_SCHEDULE["check-gateways-health"]

    assert entry["task"] in celery_app.tasks
    assert entry["schedule"].total_seconds() == 300


def test_the_gateway_list_shows_each_gateways_health(marketer_client, smtp_peer):
    _checked(GatewayFactory(name="Good relay", settings=smtp_peer.gateway_settings()))
    _checked(GatewayFactory(name="Dead relay", settings={
        "host": "127.0.0.1", "port": free_port(), "timeout": 2}))
    GatewayFactory(name="New relay")

    html = marketer_client.get(reverse("admin:communications_gateway_changelist")
                               ).content.decode()

    assert 'gateway-health-ok" title="connected: ' in html
    assert "gateway-health-failing" in html and "cannot connect to SMTP server" in html
    assert "not checked yet" in html


def test_the_check_health_now_action_probes_the_chosen_gateways(marketer_client, smtp_peer):
    chosen = GatewayFactory(settings=smtp_peer.gateway_settings())
    other = GatewayFactory(settings=smtp_peer.gateway_settings())

    response = marketer_client.post(reverse("admin:communications_gateway_changelist"), {
        "action": "check_health_now", "_selected_action": [chosen.pk]}, follow=True)

    assert "1 gateway(s) checked, all healthy." in response.content.decode()
    rows = dict(Gateway.objects.values_list("pk", "last_health_ok"))
    assert (rows[chosen.pk], rows[other.pk]) == (True, None)


def test_check_health_now_on_the_gateways_page_records_the_probe(marketer_client):
    gateway = GatewayFactory(settings={"host": "127.0.0.1", "port": free_port(), "timeout": 2})
    url = reverse("admin:communications_gateway_send_test", args=[gateway.pk])

    response = marketer_client.post(url, {"_check_health": "1"}, follow=True)

    assert "Health: failing" in response.content.decode()
    gateway.refresh_from_db()
    assert gateway.last_health_ok is False
