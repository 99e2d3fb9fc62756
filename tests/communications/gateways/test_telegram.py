"""The social channel's Telegram bot adapter against a Bot API peer on loopback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest

from communications.gateways import (
    GATEWAYS,
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.telegram import (
    ACCOUNT_GONE_CODES,
    TelegramGateway,
    plain_text_problem,
)
from tests.peers.smtp import free_port
from tests.peers.telegram import TelegramPeer

WRONG_TOKEN = "7012345678:AAnot-the-bots-token-at-all"


@pytest.fixture
def telegram_peer() -> Iterator[TelegramPeer]:
    peer = TelegramPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict) -> BaseGateway:
    return gateway_for(GatewayConfig(
        gateway_id=51, channel="social", provider="telegram", settings=settings, sender="",
        price_per_message=Decimal("0.0010"),
    ))


def _message(n: int, chat_id: str | None = None, body: str | None = None) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=chat_id or str(100_000 + n), subject="",
                           body=f"Your points, member {n}" if body is None else body)


def _send(gateway: BaseGateway, batch: Sequence[OutboundMessage]) -> list[SendResult]:
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()


# --- sending ------------------------------------------------------------------------------

def test_the_adapter_is_registered_for_the_social_channel():
    assert GATEWAYS["telegram"] is TelegramGateway
    assert TelegramGateway.channels == frozenset({"social"})


def test_a_message_reaches_the_chat_as_plain_text_without_a_parse_mode(telegram_peer):
    _send(_gateway(telegram_peer.gateway_settings()), [_message(1)])

    [sent] = telegram_peer.sent
    assert (sent.chat_id, sent.text) == ("100001", "Your points, member 1")
    assert set(sent.fields) == {"chat_id", "text"}


def test_results_come_back_in_batch_order_with_chat_and_message_ids(telegram_peer):
    batch = [_message(n, chat_id="42" if n % 2 else "43") for n in range(1, 7)]

    results = _send(_gateway(telegram_peer.gateway_settings(concurrency=1)), batch)

    assert [r.message_id for r in results] == list(range(1, 7))
    assert [r.provider_id for r in results] == ["42:1", "43:1", "42:2", "43:2", "42:3", "43:3"]
    assert all(r.cost == Decimal("0.0010") for r in results)


# --- errors -------------------------------------------------------------------------------

def test_a_bot_blocked_by_the_user_fails_permanently_and_its_siblings_are_sent(telegram_peer):
    telegram_peer.script.blocked.add("100002")

    results = _send(_gateway(telegram_peer.gateway_settings()), [_message(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent and error.code == "blocked" and error.code in ACCOUNT_GONE_CODES
    assert "bot was blocked by the user" in error.message


def test_a_chat_not_found_fails_permanently(telegram_peer):
    telegram_peer.script.missing.add("100001")

    [result] = _send(_gateway(telegram_peer.gateway_settings()), [_message(1)])

    assert result.error.permanent
    assert result.error.code == "chat_not_found" and result.error.code in ACCOUNT_GONE_CODES


def test_too_many_requests_is_transient_with_retry_after_and_the_rest_waits(telegram_peer):
    telegram_peer.script.throttled["100001"] = 35
    gateway = _gateway(telegram_peer.gateway_settings(concurrency=1))

    results = _send(gateway, [_message(n) for n in (1, 2, 3)])

    first, *rest = (r.error for r in results)
    assert (first.code, first.permanent, first.retry_after) == ("too_many_requests", False, 35)
    assert all(e.code == "too_many_requests" and not e.permanent
               and e.message.startswith("not attempted") for e in rest)
    assert telegram_peer.requests == [("100001", 429)]


def test_a_bad_gateway_page_is_transient(telegram_peer):
    telegram_peer.script.unavailable.add("100001")

    [result] = _send(_gateway(telegram_peer.gateway_settings()), [_message(1)])

    assert not result.error.permanent and not result.error.in_doubt
    assert result.error.code == "HTTP_502"


def test_a_wrong_bot_token_is_transient_and_stops_the_batch(telegram_peer):
    settings = telegram_peer.gateway_settings(bot_token=WRONG_TOKEN, concurrency=1)

    results = _send(_gateway(settings), [_message(n) for n in (1, 2, 3)])

    assert [r.error.code for r in results] == ["bot_token_refused"] * 3
    assert not any(r.error.permanent for r in results)
    assert telegram_peer.requests == [("", 401)]
    assert "Unauthorized" in results[0].error.message


def test_a_message_left_unanswered_past_the_timeout_is_in_doubt(telegram_peer):
    telegram_peer.script.stalled.add("100002")
    telegram_peer.script.stall_seconds = 4

    results = _send(_gateway(telegram_peer.gateway_settings(timeout=1)),
                    [_message(n) for n in (1, 2, 3)])

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.in_doubt and not results[1].error.permanent


def test_an_unreachable_endpoint_is_transient_and_nothing_is_in_doubt(telegram_peer):
    settings = telegram_peer.gateway_settings(base_url=f"http://127.0.0.1:{free_port()}")

    results = _send(_gateway(settings), [_message(n) for n in range(3)])

    assert all(not r.error.permanent and not r.error.in_doubt for r in results)


def test_a_text_over_4096_characters_is_refused_unsent(telegram_peer):
    [result] = _send(_gateway(telegram_peer.gateway_settings()), [_message(1, body="x" * 4097)])

    assert result.error.permanent and result.error.code == "too_long"
    assert telegram_peer.requests == []


# --- plain text only ----------------------------------------------------------------------

def test_a_body_with_html_is_refused_unsent_as_not_plain_text(telegram_peer):
    [result] = _send(_gateway(telegram_peer.gateway_settings()),
                     [_message(1, body="Hi <b>Anna</b>, your points")])

    assert result.error.permanent and result.error.code == "not_plain_text"
    assert "HTML tag" in result.error.message
    assert telegram_peer.requests == []


@pytest.mark.parametrize("text", [
    "Hi **Anna**", "Hi *Anna*", "Hi __Anna__", "Hi _Anna_", "Use `CODE10`",
    "See [the offer](https://club.example.com)", "# Autumn offer\nfor you", "~~old~~ new",
    "Hi&nbsp;Anna",
])
def test_markdown_and_html_look_like_markup(text):
    assert plain_text_problem(text)


@pytest.mark.parametrize("text", [
    "A 5* hotel for 2 * 3 nights", "Your code: summer_sale_10", "Rank #1 in town",
    "Points < 100? Earn > 50 more!", "R&D team says hi", "Price: 10 * 2 = 20",
])
def test_plain_prose_with_stars_and_underscores_passes(text):
    assert plain_text_problem(text) == ""


def test_template_errors_name_an_html_body_and_a_markdown_body():
    errors = TelegramGateway.template_errors(subject="", body="Hi **{{ member.first_name }}**",
                                             html_body="<p>Hi</p>")

    assert sorted(errors) == ["body", "html_body"]


def test_a_plain_template_has_no_template_errors():
    assert TelegramGateway.template_errors(subject="", body="Hi {{ member.first_name }}!",
                                           html_body="") == {}


# --- settings and health ------------------------------------------------------------------

def test_the_health_probe_asks_telegram_who_the_bot_is(telegram_peer):
    assert _gateway(telegram_peer.gateway_settings()).health() == (
        True, "bot @engage_club_bot answers")


def test_the_health_probe_reports_a_refused_token(telegram_peer):
    ok, detail = _gateway(telegram_peer.gateway_settings(bot_token=WRONG_TOKEN)).health()

    assert not ok and "bot_token_refused" in detail


def test_a_malformed_bot_token_is_refused_at_open_before_any_request(telegram_peer):
    gateway = _gateway(telegram_peer.gateway_settings(bot_token="123:short"))

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent and error.value.code == "settings"
    assert "bot_token" in error.value.message


def test_the_peers_settings_pass_settings_errors(telegram_peer):
    assert TelegramGateway.settings_errors(telegram_peer.gateway_settings()) == {}


def test_settings_errors_name_a_malformed_token_and_a_bad_concurrency():
    errors = TelegramGateway.settings_errors({"bot_token": "not a token", "concurrency": 0})

    assert sorted(errors) == ["bot_token", "concurrency"]
