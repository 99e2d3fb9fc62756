"""Viber business messages through a Viber partner's HTTP API (the Viber REST API's shape).

Send: `POST {base_url}/pa/send_message` with `X-Viber-Auth-Token`, one message per request:
`{receiver, min_api_version, sender: {name, avatar?}, tracking_data, type, ...}` where `receiver`
is the member's Viber user id (`MessengerAccount.account_id`), `tracking_data` Engage's message id,
and `type` follows what the message carries (see `message_json`):
- `text`: the body alone;
- `picture`: the body as its caption and `media`, the image URL;
- `rich_media`: one card with the image (if any), the body and one button opening a link.
The image and the button come from the template's `image_url`, `link_url` and `button_text`
(OutboundMessage fields of the same names).

The answer is HTTP 200 with `{status, status_message, message_token}`; status 0 is sent and
`message_token` (a 64-bit number) becomes the provider id that callbacks name. Non-zero statuses:
- 5 receiverNotRegistered, 6 notSubscribed, 11 receiverNoSuitableDevice: permanent; the first two
  (ACCOUNT_GONE_CODES) say the member's Viber id is no use to this sender any more.
- 1, 3, 4, 13, 14 (the request itself is wrong): permanent.
- 12 tooManyRequests: transient with `retry_after` (Viber gives no time: the `throttle_retry_after`
  setting, 1 s by default), and the rest of the batch waits.
- 2 invalidAuthToken, 7/8/9 the sender account blocked / not found / suspended, 10 webhookNotSet:
  the gateway's configuration, not the message, is wrong. Transient, so the messages go once it
  is fixed, and the batch stops (every other message would get the same answer); a gateway whose
  every batch fails this way opens its circuit.
- any other status: transient.
HTTP 429 (Retry-After, else `throttle_retry_after`) and 5xx are transient; 401/403/404 are the
configuration again.

Callbacks (`communications.webhooks_messengers`) are signed with `X-Viber-Content-Signature`,
the hex HMAC-SHA256 of the raw body keyed with the auth token; `callback_read` turns one into a
Receipt (delivered; seen -> opened; failed -> undelivered, the provider having accepted the
message first) or names the user who unsubscribed.

Settings: `auth_token` (required), `sender_name` (when the gateway's sender is blank; at most 28
characters, Viber's limit), `sender_avatar` (an image URL), `button_text` (the button's label
when a message gives none, default "Open"), `throttle_retry_after`, and the transport's
(`concurrency`, `timeout`, `connect_timeout`: http_sms.HttpBatchGateway, which sends the batch).
The health probe asks for the account's details (`POST /pa/get_account_info`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from communications.gateways.base import (
    GatewayError,
    OutboundMessage,
    Receipt,
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

VIBER_BASE_URL = "https://chatapi.viber.com"
SIGNATURE_HEADER = "X-Viber-Content-Signature"
AUTH_HEADER = "X-Viber-Auth-Token"

STATUS_NAMES = {
    1: "invalidUrl", 2: "invalidAuthToken", 3: "badData", 4: "missingData",
    5: "receiverNotRegistered", 6: "notSubscribed", 7: "publicAccountBlocked",
    8: "publicAccountNotFound", 9: "publicAccountSuspended", 10: "webhookNotSet",
    11: "receiverNoSuitableDevice", 12: "tooManyRequests", 13: "apiVersionNotSupported",
    14: "incompatibleWithVersion",
}
PERMANENT_STATUSES = frozenset({1, 3, 4, 5, 6, 11, 13, 14})
CONFIGURATION_STATUSES = frozenset({2, 7, 8, 9, 10})
THROTTLE_STATUS = 12
# Answers after which the rest of the batch is not attempted (see _halts_batch).
HALTING_CODES = frozenset({*(STATUS_NAMES[status] for status in CONFIGURATION_STATUSES),
                           "HTTP_401", "HTTP_403", "HTTP_404"})
# The member's Viber id will not take messages from this sender again.
ACCOUNT_GONE_CODES = frozenset({"receiverNotRegistered", "notSubscribed"})

MAX_TEXT = 7000
MAX_CAPTION = 768
MAX_SENDER_NAME = 28
MAX_BUTTON_TEXT = 250

# Callback events that are receipts, and the Engage status each one reports.
RECEIPT_EVENTS = {"delivered": "delivered", "seen": "opened", "failed": "undelivered"}
UNSUBSCRIBED = "unsubscribed"


def _status_error(status: int, status_message: str, retry_after: float) -> GatewayError:
    name = STATUS_NAMES.get(status, "generalError")
    text = f"Viber status {status} {name}: {status_message or 'no status message'}"
    if status == THROTTLE_STATUS:
        return GatewayError(text, code=name, permanent=False, retry_after=retry_after)
    return GatewayError(text, code=name, permanent=status in PERMANENT_STATUSES)


def _http_error(reply: ProviderReply, retry_after: float | None) -> GatewayError:
    text = f"HTTP {reply.status} from the Viber API: {reply.snippet()}"
    transient = reply.status in (401, 403, 404, 408, 429) or reply.status >= 500
    return GatewayError(text, code=f"HTTP_{reply.status}", permanent=not transient,
                        retry_after=retry_after if transient else None)


def message_json(outbound: OutboundMessage, *, sender: Mapping[str, str],
                 default_button_text: str) -> dict[str, Any] | GatewayError:
    """The send_message body for `outbound`, or the permanent error that refuses it."""
    media = outbound.image_url
    button_url = outbound.link_url
    button_text = outbound.button_text or default_button_text
    text = outbound.body
    if not text.strip() and not media:
        return GatewayError("the message has neither text nor an image", code="empty",
                            permanent=True)
    for key, url in (("image_url", media), ("link_url", button_url)):
        if url and not is_http_url(url):
            return GatewayError(f"{key} must be an http(s) URL, not {url[:100]!r}",
                                code="bad_url", permanent=True)
    if outbound.button_text and not button_url:
        return GatewayError("a button needs its link (link_url)", code="bad_button",
                            permanent=True)
    limit = MAX_CAPTION if media and not button_url else MAX_TEXT
    if len(text) > limit:
        return GatewayError(f"the text is {len(text)} characters; Viber takes at most {limit} "
                            f"{'under an image' if limit == MAX_CAPTION else ''}".strip(),
                            code="too_long", permanent=True)
    if len(button_text) > MAX_BUTTON_TEXT:
        return GatewayError(f"the button text is over {MAX_BUTTON_TEXT} characters",
                            code="too_long", permanent=True)
    body: dict[str, Any] = {"receiver": outbound.address, "min_api_version": 1,
                            "sender": dict(sender), "tracking_data": str(outbound.message_id)}
    if button_url:
        buttons: list[dict[str, Any]] = []
        if media:
            buttons.append({"Columns": 6, "Rows": 3, "ActionType": "open-url",
                            "ActionBody": button_url, "Image": media})
        if text.strip():
            buttons.append({"Columns": 6, "Rows": 2, "ActionType": "none", "Text": text,
                            "TextHAlign": "left", "TextVAlign": "middle"})
        buttons.append({"Columns": 6, "Rows": 1, "ActionType": "open-url",
                        "ActionBody": button_url, "Text": button_text})
        body.update(type="rich_media", min_api_version=2, alt_text=text or button_url,
                    rich_media={"Type": "rich_media", "ButtonsGroupColumns": 6,
                                "ButtonsGroupRows": sum(b["Rows"] for b in buttons),
                                "Buttons": buttons})
    elif media:
        body.update(type="picture", text=text, media=media)
    else:
        body.update(type="text", text=text)
    return body


@register
class ViberGateway(HttpBatchGateway):
    provider = "viber"
    channels = frozenset({"viber"})
    provider_label = "the Viber API"
    secret_settings = ("auth_token",)
    dead_address_codes = ACCOUNT_GONE_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        token = settings.get("auth_token")
        if not isinstance(token, str) or not token.strip():
            errors["auth_token"] = ("required: the account's authentication token "
                                    "(X-Viber-Auth-Token)")
        if "base_url" in settings and not is_http_url(settings["base_url"]):
            errors["base_url"] = f"must be an http(s) URL, e.g. {VIBER_BASE_URL}"
        name = settings.get("sender_name", "")
        if not isinstance(name, str) or len(name) > MAX_SENDER_NAME:
            errors["sender_name"] = f"must be text of at most {MAX_SENDER_NAME} characters"
        if "sender_avatar" in settings and not is_http_url(settings["sender_avatar"]):
            errors["sender_avatar"] = "must be an http(s) URL of an image"
        button = settings.get("button_text", "")
        if not isinstance(button, str) or len(button) > MAX_BUTTON_TEXT:
            errors["button_text"] = f"must be text of at most {MAX_BUTTON_TEXT} characters"
        return errors

    def open(self) -> None:
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        s = self.config.settings
        name = (self.config.sender or str(s.get("sender_name") or "")).strip()
        if not name:
            raise GatewayError("Viber needs a sender name: set the gateway's sender or the "
                               "sender_name setting", code="settings", permanent=True)
        if len(name) > MAX_SENDER_NAME:
            raise GatewayError(f"the sender name {name!r} is over Viber's {MAX_SENDER_NAME} "
                               "characters", code="settings", permanent=True)
        self._sender = {"name": name}
        if s.get("sender_avatar"):
            self._sender["avatar"] = str(s["sender_avatar"])
        self._button_text = str(s.get("button_text") or "Open")
        self._base_url = str(s.get("base_url") or VIBER_BASE_URL).rstrip("/")
        self._headers = {AUTH_HEADER: str(s["auth_token"]),
                         "Content-Type": "application/json; charset=utf-8"}
        super().open()

    def health(self) -> tuple[bool, str]:
        """The account's own details (`get_account_info`): proves the URL and the token."""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        s = self.config.settings
        reply = _post_json(f"{str(s.get('base_url') or VIBER_BASE_URL).rstrip('/')}"
                           "/pa/get_account_info", {},
                           {AUTH_HEADER: str(s["auth_token"])},
                           timeout=float(s.get("timeout", DEFAULT_TIMEOUT)))
        if isinstance(reply, GatewayError):
            return False, gateway_error_text(reply)
        status, data = reply
        if status != 200 or not isinstance(data, dict):
            return False, f"HTTP {status} from the Viber API"
        if data.get("status") != 0:
            error = _status_error(data.get("status") if isinstance(data.get("status"), int)
                                  else -1, str(data.get("status_message") or ""), 0)
            return False, gateway_error_text(error)
        return True, f"account {data.get('name') or data.get('id') or '?'} answers"

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        body = message_json(outbound, sender=self._sender,
                            default_button_text=self._button_text)
        if isinstance(body, GatewayError):
            raise body
        return ProviderRequest("POST", f"{self._base_url}/pa/send_message",
                               json.dumps(body, ensure_ascii=False).encode(), self._headers)

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        data = reply.json()
        if reply.status != 200:
            return SendResult(outbound.message_id,
                              error=_http_error(reply, self._throttled(reply)))
        if not isinstance(data, dict):
            return SendResult(outbound.message_id, error=GatewayError(
                f"an answer that is not Viber's JSON: {reply.snippet()}", code="bad_answer",
                permanent=False, in_doubt=True))
        status = data.get("status")
        if status == 0:
            token = scalar_text(data.get("message_token"))
            if not token:
                return SendResult(outbound.message_id, error=GatewayError(
                    f"Viber answered ok without a message_token: {reply.snippet()}",
                    code="no_provider_id", permanent=False, in_doubt=True))
            return SendResult(outbound.message_id, provider_id=token,
                              cost=self.config.price_per_message)
        if not isinstance(status, int) or isinstance(status, bool):
            status = -1
        return SendResult(outbound.message_id, error=_status_error(
            status, str(data.get("status_message") or ""), self._throttle_retry_after))

    def _halts_batch(self, reply: ProviderReply, error: GatewayError) -> bool:
        # A throttle, or the account's configuration: every other message would get the same.
        stop = not error.permanent and (error.code in HALTING_CODES
                                        or error.retry_after is not None)
        return stop or super()._halts_batch(reply, error)


def _post_json(url: str, body: Mapping[str, Any], headers: Mapping[str, str], *,
               timeout: float) -> tuple[int, Any] | GatewayError:
    """One request outside a batch (the health probe): (HTTP status, parsed JSON or None)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", **headers})
    try:
        # Bandit B310 reviewed: base_url is checked http(s) by validate_settings (is_http_url).
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return GatewayError(f"cannot reach the Viber API: {exc}", code="connect_failed",
                            permanent=False)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


# --- callbacks ------------------------------------------------------------------------------

def callback_signature(*, auth_token: str, body: bytes) -> str:
    """The X-Viber-Content-Signature Viber puts on `body`."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def callback_signature_valid(*, auth_token: str, body: bytes, signature: str) -> bool:
    expected = callback_signature(auth_token=auth_token, body=body)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


@dataclass(frozen=True)
class ViberCallback:
    """One callback, read: a receipt, a user who unsubscribed, or neither (an event Engage
    does not act on: subscribed, conversation_started, message, webhook)."""

    event: str
    receipt: Receipt | None = None
    unsubscribed_user_id: str = ""
    occurred_at: datetime | None = None


def _event_time(timestamp: Any) -> datetime:
    """Viber's `timestamp` (milliseconds since the epoch); the time of arrival without one."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        try:
            return datetime.fromtimestamp(timestamp / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.now(UTC)


def callback_read(body: bytes) -> ViberCallback:
    """Read a callback's body; ValueError when it is not a Viber event."""
    payload = json.loads(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise ValueError("not a Viber callback: an object with an event is expected")
    event = payload["event"]
    occurred_at = _event_time(payload.get("timestamp"))
    token = payload.get("message_token")
    if event in RECEIPT_EVENTS:
        if (isinstance(token, bool) or not isinstance(token, int | str)
                or not 0 < len(str(token)) <= 200):
            raise ValueError(f"a {event} callback without its message_token")
        return ViberCallback(event, receipt=Receipt(
            provider_id=str(token), status=RECEIPT_EVENTS[event], occurred_at=occurred_at,
            code=event, detail=str(payload.get("desc") or "")))
    if event == UNSUBSCRIBED:
        user_id = payload.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("an unsubscribed callback without its user_id")
        return ViberCallback(event, unsubscribed_user_id=user_id, occurred_at=occurred_at)
    return ViberCallback(event, occurred_at=occurred_at)
