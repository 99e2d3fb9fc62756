"""The social channel through a Telegram bot (Bot API `sendMessage`).

Send: `POST {base_url}/bot{token}/sendMessage` with `{chat_id, text}`, one message per request;
`chat_id` is the member's Telegram id (`MessengerAccount.account_id`). No `parse_mode`: the social
channel carries plain text only, as the networks' moderation rules for business messages ask, so
a body that looks like HTML or Markdown is refused before it goes (`plain_text_problem`; the same
rule is `TelegramGateway.template_errors` for a template being saved).

Answers: `{ok: true, result: {message_id, chat: {id}}}`: sent, and since Telegram numbers messages
per chat, the provider id is `<chat_id>:<message_id>`. Telegram sends no delivery receipts, so a
sent message stays sent. `{ok: false, error_code, description, parameters?}`:
- 403 (bot blocked by the user, user deactivated, bot kicked) and 400 (chat not found, or the
  request itself wrong): permanent; ACCOUNT_GONE_CODES say the member's chat is no use any more.
- 429 with `parameters.retry_after`: transient with that wait, and the rest of the batch waits.
- 401 Unauthorized / 404 Not Found (what Telegram answers to a wrong bot token): the gateway's
  configuration. Transient, so the messages go once it is fixed, and the batch stops.
- 5xx (Telegram's front answers 502 with an HTML page): transient.

Settings: `bot_token` (required, as BotFather gives it), `base_url` and the transport's
(`concurrency`, `timeout`, `connect_timeout`: http_sms.HttpBatchGateway, which sends the batch).
The health probe is `getMe`, which proves the URL and the token.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from communications.gateways.base import (
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_error_text,
    register,
)
from communications.gateways.http_sms import (
    DEFAULT_TIMEOUT,
    HttpBatchGateway,
    ProviderReply,
    ProviderRequest,
    is_http_url,
    scalar_text,
    transport_settings_errors,
)
from communications.renderers import plain_text_problem
from config.retry_after import retry_after_seconds

TELEGRAM_BASE_URL = "https://api.telegram.org"
MAX_TEXT = 4096
BOT_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")

# Engage's codes for Telegram's descriptions (Telegram's error_code alone is 400 or 403).
DESCRIPTION_CODES = (
    ("bot was blocked by the user", "blocked"),
    ("user is deactivated", "user_deactivated"),
    ("bot was kicked", "kicked"),
    ("chat not found", "chat_not_found"),
    ("message is too long", "too_long"),
    ("message text is empty", "empty"),
)
ACCOUNT_GONE_CODES = frozenset({"blocked", "user_deactivated", "kicked", "chat_not_found"})
# Telegram's 401 Unauthorized / 404 Not Found: the bot token is wrong.
CONFIGURATION_CODE = "bot_token_refused"

def _reply_error(reply: ProviderReply, data: Any, throttle_wait: float) -> GatewayError:
    if not isinstance(data, dict):
        transient = reply.status in (401, 404, 408, 429) or reply.status >= 500
        return GatewayError(f"HTTP {reply.status} from Telegram: {reply.snippet()}",
                            code=f"HTTP_{reply.status}", permanent=not transient,
                            retry_after=(retry_after_seconds(reply.headers.get("Retry-After"))
                                         if transient else None))
    error_code = data.get("error_code")
    if not isinstance(error_code, int) or isinstance(error_code, bool):
        error_code = reply.status
    description = str(data.get("description") or "no description")
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    code = next((ours for words, ours in DESCRIPTION_CODES if words in description.lower()),
                str(error_code))
    text = f"Telegram {error_code}: {description}"
    if error_code == 429:
        wait = retry_after_seconds(scalar_text(parameters.get("retry_after")))
        if wait is None:
            wait = retry_after_seconds(reply.headers.get("Retry-After"))
        return GatewayError(text, code="too_many_requests", permanent=False,
                            retry_after=throttle_wait if wait is None else wait)
    if error_code in (401, 404):
        return GatewayError(text, code=CONFIGURATION_CODE, permanent=False)
    if error_code >= 500:
        return GatewayError(text, code=code, permanent=False,
                            retry_after=retry_after_seconds(reply.headers.get("Retry-After")))
    return GatewayError(text, code=code, permanent=True)


@register
class TelegramGateway(HttpBatchGateway):
    provider = "telegram"
    channels = frozenset({"social"})
    provider_label = "the Telegram Bot API"
    secret_settings = ("bot_token",)
    dead_address_codes = ACCOUNT_GONE_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        token = settings.get("bot_token")
        if not isinstance(token, str) or not BOT_TOKEN.match(token):
            errors["bot_token"] = ("required: the bot's token as BotFather gives it "
                                   "(123456789:AA...)")
        if "base_url" in settings and not is_http_url(settings["base_url"]):
            errors["base_url"] = f"must be an http(s) URL, e.g. {TELEGRAM_BASE_URL}"
        return errors

    @classmethod
    def template_errors(cls, *, subject: str, body: str, html_body: str) -> dict[str, str]:
        """What keeps a template from going out on this channel, keyed by field."""
        errors: dict[str, str] = {}
        if html_body.strip():
            errors["html_body"] = "the social channel sends plain text only; leave it empty"
        problem = plain_text_problem(body)
        if problem:
            errors["body"] = problem
        if not body.strip():
            errors["body"] = "the text is required"
        return errors

    def _bot_url(self, method: str) -> str:
        s = self.config.settings
        base = str(s.get("base_url") or TELEGRAM_BASE_URL).rstrip("/")
        return f"{base}/bot{s.get('bot_token', '')}/{method}"

    def open(self) -> None:
        self._url = self._bot_url("sendMessage")
        self._headers = {"Content-Type": "application/json; charset=utf-8"}
        super().open()

    def health(self) -> tuple[bool, str]:
        """`getMe`: the bot's own profile, which only a valid token gets."""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        timeout = float(self.config.settings.get("timeout", DEFAULT_TIMEOUT))
        try:
            # Bandit B310 reviewed: base_url is checked http(s) by validate_settings (is_http_url).
            with urllib.request.urlopen(self._bot_url("getMe"),  # noqa: S310  # nosec B310
                                        timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            return False, f"transient [connect_failed]: cannot reach Telegram: {exc}"
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if status == 200 and isinstance(data, dict) and data.get("ok") is True:
            bot = data.get("result") if isinstance(data.get("result"), dict) else {}
            return True, f"bot @{bot.get('username', '?')} answers"
        error = _reply_error(ProviderReply(status, {}, raw), data, 0)
        return False, gateway_error_text(error)

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        text = outbound.body
        if not text.strip():
            raise GatewayError("the message has no text", code="empty", permanent=True)
        if len(text) > MAX_TEXT:
            raise GatewayError(f"the text is {len(text)} characters; Telegram takes at most "
                               f"{MAX_TEXT}", code="too_long", permanent=True)
        problem = plain_text_problem(text)
        if problem:
            raise GatewayError(f"not sent: {problem}", code="not_plain_text", permanent=True)
        body = json.dumps({"chat_id": outbound.address, "text": text}, ensure_ascii=False)
        return ProviderRequest("POST", self._url, body.encode(), self._headers)

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        data = reply.json()
        if reply.status == 200 and isinstance(data, dict) and data.get("ok") is True:
            result = data.get("result") if isinstance(data.get("result"), dict) else {}
            chat = result.get("chat") if isinstance(result.get("chat"), dict) else {}
            chat_id = scalar_text(chat.get("id")) or outbound.address
            message_id = scalar_text(result.get("message_id"))
            if not message_id:
                return SendResult(outbound.message_id, error=GatewayError(
                    f"Telegram answered ok without a message_id: {reply.snippet()}",
                    code="no_provider_id", permanent=False, in_doubt=True))
            return SendResult(outbound.message_id, provider_id=f"{chat_id}:{message_id}",
                              cost=self.config.price_per_message)
        if reply.status == 200 and not isinstance(data, dict):
            return SendResult(outbound.message_id, error=GatewayError(
                f"an answer that is not Telegram's JSON: {reply.snippet()}", code="bad_answer",
                permanent=False, in_doubt=True))
        return SendResult(outbound.message_id,
                          error=_reply_error(reply, data, self._throttle_retry_after))

    def _halts_batch(self, reply: ProviderReply, error: GatewayError) -> bool:
        # A throttle, or a token Telegram refuses: every other message would get the same.
        stop = not error.permanent and (error.code == CONFIGURATION_CODE
                                        or error.retry_after is not None)
        return stop or super()._halts_batch(reply, error)
