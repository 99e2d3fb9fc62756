"""The development sinks: the file sink writes what fits each channel, the console sink prints a
block per message, and neither is let near real members while DEBUG is off."""

from __future__ import annotations

import email
import email.policy
import json
import multiprocessing
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.checks import run_checks

from communications.demo import demo_setup
from communications.gateways import (
    GATEWAYS,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    gateway_for,
)
from communications.models import Gateway, Message, QuietHours
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from members.models import Consent
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import consenting_member

MESSENGER_CHANNELS = ["sms", "push", "viber", "social"]


@pytest.fixture
def debug(settings):
    settings.DEBUG = True  # sinks are development-only


def _sink(provider: str, channel: str, directory: Path | None = None, *, gateway_id: int = 3,
          sender: str = "Club"):
    gateway = gateway_for(GatewayConfig(
        gateway_id=gateway_id, channel=channel, provider=provider,
        settings={"directory": str(directory)} if directory else {}, sender=sender,
        price_per_message=Decimal("0.001")))
    gateway.open()
    return gateway


def _lines(directory: Path, gateway_id: int = 3) -> list[dict]:
    text = (directory / f"gateway-{gateway_id}" / "messages.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


# --- file sink ------------------------------------------------------------------------------

def test_the_email_sink_writes_each_message_as_an_eml_file(debug, tmp_path):
    sink = _sink("file_sink", "email", tmp_path, sender="Club <club@example.com>")

    [result] = sink.send([OutboundMessage(
        message_id=5, address="ann@example.com", subject="Hello", body="Plain text",
        html_body="<p>Hi</p>", headers={"List-Unsubscribe": "<https://club.example.com/u/x>"})])

    path = tmp_path / "gateway-3" / "message-5.eml"
    written = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert (written["To"], written["From"], written["Subject"]) == (
        "ann@example.com", "Club <club@example.com>", "Hello")
    assert written["Message-ID"].startswith("<engage.5.3@")
    assert written["List-Unsubscribe"] == "<https://club.example.com/u/x>"
    assert written.get_body(("plain",)).get_content().strip() == "Plain text"
    assert written.get_body(("html",)).get_content().strip() == "<p>Hi</p>"
    assert (result.ok, result.provider_id, result.cost) == (True, "message-5.eml",
                                                            Decimal("0.001"))


@pytest.mark.parametrize("channel", MESSENGER_CHANNELS)
def test_a_non_email_sink_appends_one_json_line_per_message(debug, tmp_path, channel):
    sink = _sink("file_sink", channel, tmp_path)

    results = sink.send([OutboundMessage(message_id=n, address=f"addr-{n}", subject="",
                                         body=f"Text {n}") for n in (1, 2)])

    lines = _lines(tmp_path)
    assert [(line["message_id"], line["channel"], line["address"], line["body"])
            for line in lines] == [(1, channel, "addr-1", "Text 1"), (2, channel, "addr-2",
                                                                       "Text 2")]
    assert [r.provider_id for r in results] == ["messages.jsonl#1", "messages.jsonl#2"]
    assert all(r.ok for r in results)
    assert not list((tmp_path / "gateway-3").glob("*.eml"))


def test_a_json_line_carries_the_title_image_link_button_and_data(debug, tmp_path):
    sink = _sink("file_sink", "push", tmp_path, sender="")

    sink.send([OutboundMessage(
        message_id=9, address="device-token", subject="Double points", body="Today only",
        image_url="https://cdn.example.com/p.png", link_url="myapp://offers/7",
        button_text="Open", data={"offer": "7"})])

    [line] = _lines(tmp_path)
    assert {key: value for key, value in line.items() if key != "sent_at"} == {
        "message_id": 9, "channel": "push", "address": "device-token", "sender": "",
        "subject": "Double points", "body": "Today only",
        "image_url": "https://cdn.example.com/p.png", "link_url": "myapp://offers/7",
        "button_text": "Open", "data": {"offer": "7"}}
    assert line["sent_at"].endswith("+00:00")


def test_text_outside_ascii_is_written_as_it_reads(debug, tmp_path):
    _sink("file_sink", "sms", tmp_path).send([OutboundMessage(
        message_id=1, address="+79161234567", subject="", body="Привет, Анна")])

    text = (tmp_path / "gateway-3" / "messages.jsonl").read_text(encoding="utf-8")
    assert "Привет, Анна" in text


def _write_batches(directory: str, writer: int, start, batches: int, size: int) -> None:
    sink = _sink("file_sink", "sms", Path(directory))
    start.wait()
    for batch in range(batches):
        sink.send([OutboundMessage(
            message_id=writer * 1_000_000 + batch * size + n, address=f"+4915{writer}",
            subject="", body=str(writer) * 20_000) for n in range(size)])


def test_two_worker_processes_never_interleave_their_lines(debug, tmp_path):
    # Lines far above a buffered file's chunk, written by both at once: a line written in
    # pieces would be cut into by the other process's.
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    writers = [context.Process(target=_write_batches,
                               args=(str(tmp_path), writer, start, 20, 5))
               for writer in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)

    assert [process.exitcode for process in writers] == [0, 0]
    lines = _lines(tmp_path)
    assert len(lines) == 200
    assert all(line["body"] == line["address"][-1] * 20_000 for line in lines)


@pytest.mark.django_db
def test_an_sms_mailing_through_the_file_sink_leaves_a_line_per_sent_message(debug, tmp_path):
    QuietHours.objects.filter(channel="sms").delete()  # any hour will do
    members = [consenting_member(channel="sms", first_name=name) for name in ("Ann", "Bob")]
    gateway = GatewayFactory(channel="sms", provider="file_sink", sender="Club",
                             settings={"directory": str(tmp_path)})
    mailing = MailingFactory(gateway=gateway, template=TemplateFactory(
        channel="sms", subject="", body="Hi {{ member.first_name }}"))
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    message_batch_dispatch(mailing_id=mailing.pk, batch_size=10)

    lines = _lines(tmp_path, gateway.pk)
    messages = {m.pk: m for m in Message.objects.filter(mailing=mailing)}
    assert sorted((line["address"], line["body"]) for line in lines) == sorted(
        (member.phone, f"Hi {member.first_name}") for member in members)
    assert {line["message_id"] for line in lines} == set(messages)
    assert all(m.status == Message.Status.SENT
               and m.provider_id == f"messages.jsonl#{m.pk}" for m in messages.values())


# --- console sink ---------------------------------------------------------------------------

def test_the_console_sink_prints_one_block_per_message(debug, capsys):
    sink = _sink("console", "sms")

    results = sink.send([OutboundMessage(message_id=n, address=f"+4915100000{n}", subject="",
                                         body=f"Hi {name}, points double today.")
                         for n, name in ((1, "Ann"), (2, "Bob"))])

    assert capsys.readouterr().out == (
        "=== sms message 1 · gateway 3 · to +49151000001 ===\n"
        "from:     Club\n"
        "\n"
        "Hi Ann, points double today.\n"
        "\n"
        "=== sms message 2 · gateway 3 · to +49151000002 ===\n"
        "from:     Club\n"
        "\n"
        "Hi Bob, points double today.\n"
        "\n")
    assert [(r.ok, r.provider_id) for r in results] == [(True, "console#1"), (True, "console#2")]


def test_the_console_sink_shows_a_pushs_title_image_link_and_data(debug, capsys):
    _sink("console", "push", sender="").send([OutboundMessage(
        message_id=4, address="device-token", subject="Double points", body="Today only",
        image_url="https://cdn.example.com/p.png", link_url="myapp://offers/7",
        data={"offer": "7"})])

    assert capsys.readouterr().out == (
        "=== push message 4 · gateway 3 · to device-token ===\n"
        "subject:  Double points\n"
        "image:    https://cdn.example.com/p.png\n"
        "link:     myapp://offers/7\n"
        'data:     {"offer": "7"}\n'
        "\n"
        "Today only\n"
        "\n")


def test_the_console_sink_shows_an_emails_headers_and_the_size_of_its_html(debug, capsys):
    _sink("console", "email", sender="club@example.com").send([OutboundMessage(
        message_id=6, address="ann@example.com", subject="News", body="Plain",
        html_body="<p>Hi</p>", headers={"List-Unsubscribe": "<https://club.example.com/u/x>"})])

    out = capsys.readouterr().out
    assert "List-Unsubscribe: <https://club.example.com/u/x>\n" in out
    assert "html:     9 characters (not shown)\n" in out
    assert out.endswith("\nPlain\n\n")


def test_the_console_sink_is_healthy_without_settings(debug):
    ok, detail = _sink("console", "viber").health()

    assert ok and "standard output" in detail


# --- refused while DEBUG is off -------------------------------------------------------------

@pytest.mark.parametrize("provider", ["file_sink", "console"])
def test_a_sink_cannot_be_used_for_sending_while_debug_is_off(settings, provider):
    settings.DEBUG = False

    with pytest.raises(GatewayError) as error:
        _sink(provider, "sms")

    assert error.value.code == "sink_refused" and error.value.permanent


def _sink_errors() -> list[str]:
    return [check.msg for check in run_checks(databases=["default"])
            if check.id == "communications.E001"]


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["file_sink", "console"])
def test_the_system_check_refuses_an_active_sink_gateway_while_debug_is_off(settings,
                                                                           provider):
    GatewayFactory(name="Dev sink", channel="sms", provider=provider, settings={})
    settings.DEBUG = False

    assert _sink_errors() == ["Gateway 'Dev sink' uses a development sink while DEBUG is off."]


@pytest.mark.django_db
def test_the_system_check_lets_sinks_be_while_debug_is_on(settings):
    GatewayFactory(channel="sms", provider="console", settings={})
    settings.DEBUG = True

    assert _sink_errors() == []


@pytest.mark.django_db
def test_the_system_check_lets_an_inactive_sink_be_while_debug_is_off(settings):
    GatewayFactory(channel="sms", provider="console", settings={}, is_active=False)
    settings.DEBUG = False

    assert _sink_errors() == []


# --- the demo -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_demo_has_a_sink_gateway_for_every_channel_its_members_may_get(settings, tmp_path):
    settings.VAR_DIR = tmp_path

    demo_setup(members=30)

    consented = set(Consent.objects.filter(state=Consent.State.GRANTED)
                    .values_list("channel", flat=True))
    sinks = {gateway.channel for gateway in Gateway.objects.filter(is_active=True)
             if GATEWAYS[gateway.provider].is_sink}
    assert consented and consented <= sinks
