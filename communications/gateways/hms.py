"""Push to Huawei devices through Huawei Push Kit (the HMS Core server API, v1).

OAuth 2.0, client credentials: `POST {token_url}` (https://oauth-login.cloud.huawei.com/oauth2/v3/
token) with the form `grant_type=client_credentials`, `client_id` (the app id) and
`client_secret` (the app secret) answers `{access_token, expires_in, token_type}`. The token is
kept per gateway id for the life of the process, so a worker fetches one an hour, not one per
batch, and is fetched again `REFRESH_MARGIN_S` before it expires, or when Push Kit answers a send
with 80200003 (token expired) or 80200001 (OAuth error): then once for the whole batch however
many requests it refused, and each refused request is repeated once with the new token. A token
endpoint that refuses the app id and secret is `oauth_refused`, one out of reach or answering
5xx `oauth_unreachable`; both transient, since the gateway's configuration (or Huawei's login
service), not the message, is wrong: the messages go once it is fixed, and a gateway whose
every batch fails so opens its circuit.

Send: `POST {endpoint}/v1/{app_id}/messages:send` with `Authorization: Bearer <token>` and
    {"validate_only": false, "message": {
        "notification": {"title", "body", "image"},
        "android": {"bi_tag": "<Engage message id>", "notification": {"click_action": {...}}},
        "data": "<JSON text of push_data(outbound)>", "token": ["<device token>"]}}
Push Kit wants a click action on every notification: a web link opens in the browser (type 2,
`url`), an app deep link such as `myapp://offers/7` opens the app's activity for it (type 1,
`intent`), no link opens the app (type 3).

One request per message, not multicast. Push Kit takes up to 1000 tokens per request, but one
request carries one payload, and no two Engage pushes share one: the title and body are
personalized per member, and `push_data` carries each message's own id, with which the app
reports the push read. A multicast answer lists only the illegal tokens, and its requestId (and
biTag) would name the request, not the message, so no receipt could be told apart. What
multicast would save, measured against tests/peers/hms.py in its own process from a bare aiohttp
client (2 cores shared with other work, so figures only relative): one push per request, 32 in
flight, 420 to 830 pushes/s, as the FCM peer gives at the same moment, and this adapter 75 to 93%
of that; 1000 tokens per request, 4 in flight, 36,000 to 69,000 tokens/s, some 80 times more.
Worth it for identical pushes only, which Engage does not send; `bench dispatch_hms` reports the
adapter's figure beside both ceilings.

Results, per message (Push Kit answers `{code, msg, requestId}`; the code is read whatever the
HTTP status, the HTTP status only when there is no code):
- 80000000: sent; `provider_id` is the requestId, which the message's receipts carry.
- 80100000 (partial success, `msg` the JSON text of `{success, failure, illegal_tokens}`): sent,
  unless its token is listed, which is then as 80300007.
- 80300007 (all tokens invalid): permanent, and in TOKEN_INVALID_CODES: the caller deactivates
  the device.
- 80100003 (bad message structure), 80300008 (body over 4096 bytes, the token aside), any other
  801xxxxx or 803xxxxx: permanent, the device kept.
- 80200001 / 80200003: the token is refreshed and the request repeated, as above; refused again,
  transient and the rest of the batch is not attempted.
- 80300002 (no permission: the app may not push, or the tokens are another app's) and HTTP
  403/404 without a code: the configuration; transient, and the rest of the batch not attempted.
- HTTP 429 and 503 (Push Kit's flow control): transient with `retry_after` (Retry-After, else
  `throttle_retry_after`), and the rest of the batch waits.
- 81000001 (internal error), other 5xx and any code not listed here: transient.
- No answer after the request went out (read timeout, connection dropped): in doubt, since Push
  Kit may have taken the push and has no idempotency key to make a resend safe.

Receipts: Push Kit posts `{"statuses": [{biTag, appid, token, status, timestamp, requestId}]}`
to the receipt URL configured in AppGallery Connect, here `hooks/hms/<gateway id>/receipts`
(communications.webhooks_push). It authenticates them only with the callback user name and key
configured beside that URL: both set, each call carries `X-HUAWEI-CALLBACK-ID: timestamp=<ms>;
nonce=<uuid>;value=<base64 HMAC-SHA256 under the key of timestamp + nonce + user name>`, which
`callback_authentic` checks, with the timestamp within CALLBACK_MAX_SKEW_S of our clock. The
signature does not cover the body, so it proves the sender over HTTPS, not the body; a receipt
replayed changes nothing (the same receipt is stored once). `receipts_read` maps status 0 to
delivered and the others to undelivered with Push Kit's reason, except 27 and 201, which say the
push is held (on the device, or by Push Kit's control) and may still arrive.

Settings: `app_id` and `client_secret` (AppGallery Connect > Project settings > App information),
`endpoint` (default https://push-api.cloud.huawei.com), `token_url`, `callback_user` and
`inbound_secret` (the callback user name and key), and the transport's (`concurrency`,
`timeout`, `connect_timeout`, `throttle_retry_after`: http_sms.HttpBatchGateway, which sends the
batch). The health probe asks the token endpoint for a fresh token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from communications.gateways.base import (
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
    gateway_error_text,
    push_data,
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
from config.retry_after import retry_after_seconds

HMS_ENDPOINT = "https://push-api.cloud.huawei.com"
HMS_TOKEN_URL = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"
CALLBACK_HEADER = "X-HUAWEI-CALLBACK-ID"
CALLBACK_MAX_SKEW_S = 300
# Fetched again this long before it expires (or halfway through a shorter life).
REFRESH_MARGIN_S = 300

SUCCESS = "80000000"
PARTIAL_SUCCESS = "80100000"
TOKEN_INVALID = "80300007"
AUTH_CODES = frozenset({"80200001", "80200003", "HTTP_401"})
# The app's configuration with Push Kit: every other message would get the same answer.
CONFIGURATION_CODES = frozenset({"80300002", "HTTP_403", "HTTP_404"})
TOKEN_INVALID_CODES = frozenset({TOKEN_INVALID})
CODE_NAMES = {
    "80100000": "some tokens are invalid", "80100001": "a parameter is wrong",
    "80100003": "the message structure is wrong", "80100004": "the TTL is in the past",
    "80100013": "the collapse_key is wrong", "80100016": "the message has sensitive content",
    "80200001": "OAuth authentication error", "80200003": "the OAuth token expired",
    "80300002": "the app may not send to these tokens",
    "80300007": "the token is invalid", "80300008": "the message body is over 4096 bytes",
    "80300010": "too many tokens", "81000001": "Push Kit internal error",
}
FLOW_CONTROL_STATUSES = (429, 503)

# Receipt statuses: 0 is delivered; HELD_STATUSES may still arrive, so they say nothing final
# (an undelivered recorded first would outrank the delivered that follows); any other is
# undelivered, with Push Kit's reason where it gives one.
RECEIPT_REASONS = {
    0: "delivered to the device", 2: "the app is not installed",
    5: "the token is not the device's current user's", 6: "notifications are switched off",
    10: "the device has not been online for 30 days", 15: "replaced by a later offline message",
    102: "the device's daily message limit was reached",
}
# 27: kept on the device until the app runs; 201: held back by Push Kit's delivery control.
HELD_STATUSES = frozenset({27, 201})


def _code_error(code: str, text: str, status: int, retry_after: float | None) -> GatewayError:
    message = f"Push Kit {code} ({CODE_NAMES.get(code, 'unknown code')}): {text}"
    if code in AUTH_CODES or code in CONFIGURATION_CODES:
        return GatewayError(message, code=code, permanent=False)
    if code == TOKEN_INVALID:
        return GatewayError(message, code=code, permanent=True)
    if status in FLOW_CONTROL_STATUSES:
        return GatewayError(message, code=code, permanent=False, retry_after=retry_after)
    permanent = code.startswith(("801", "803"))
    return GatewayError(message, code=code, permanent=permanent,
                        retry_after=None if permanent else retry_after)


def _http_error(reply: ProviderReply, retry_after: float | None) -> GatewayError:
    code = f"HTTP_{reply.status}"
    text = f"HTTP {reply.status} from Push Kit: {reply.snippet()}"
    if code in AUTH_CODES or code in CONFIGURATION_CODES:
        return GatewayError(text, code=code, permanent=False)
    transient = reply.status in (408, 429) or reply.status >= 500
    return GatewayError(text, code=code, permanent=not transient,
                        retry_after=retry_after if transient else None)


def _illegal_tokens(msg: str) -> list[str]:
    """The tokens a partial success lists as illegal (`msg` is JSON text inside the JSON)."""
    try:
        detail = json.loads(msg)
    except ValueError:
        return []
    tokens = detail.get("illegal_tokens") if isinstance(detail, dict) else None
    if not isinstance(tokens, list):
        return []
    return [token for token in tokens if isinstance(token, str)]


def click_action(link: str) -> dict[str, Any]:
    """What a tap on the notification does: open the link in the browser, open the app at its
    deep link, or open the app."""
    if not link:
        return {"type": 3}
    if urlsplit(link).scheme in ("http", "https"):
        return {"type": 2, "url": link}
    return {"type": 1, "intent": link}


def message_json(outbound: OutboundMessage) -> bytes:
    """The messages:send body for `outbound`, to its one device token."""
    notification = {key: value for key, value in (
        ("title", outbound.subject), ("body", outbound.body), ("image", outbound.image_url))
        if value}
    message: dict[str, Any] = {
        "android": {"bi_tag": str(outbound.message_id),
                    "notification": {"click_action": click_action(outbound.link_url)}},
        "data": json.dumps(push_data(outbound), ensure_ascii=False),
        "token": [outbound.address],
    }
    if notification:
        message["notification"] = notification
    return json.dumps({"validate_only": False, "message": message},
                      ensure_ascii=False).encode()


# --- OAuth 2.0 --------------------------------------------------------------------------------

@dataclass
class _AccessToken:
    fingerprint: str
    lock: threading.Lock
    token: str = ""
    refresh_at: float = 0.0  # time.monotonic()


# One entry per gateway id for the life of the process, shared by every batch a worker sends.
_TOKENS: dict[int, _AccessToken] = {}
_TOKENS_LOCK = threading.Lock()


def access_token_fetch(*, token_url: str, app_id: str, client_secret: str,
                       timeout: float) -> tuple[str, float]:
    """A new access token from the token endpoint, and its lifetime in seconds."""
    form = urlencode({"grant_type": "client_credentials", "client_id": app_id,
                      "client_secret": client_secret}).encode()
    request = urllib.request.Request(
        token_url, data=form, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        # Bandit B310 reviewed: token_url is checked http(s) by validate_settings (is_http_url).
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayError(f"cannot reach the Huawei token endpoint: {exc}",
                           code="oauth_unreachable", permanent=False) from exc
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    data = data if isinstance(data, dict) else {}
    token, lifetime = data.get("access_token"), data.get("expires_in")
    if (status == 200 and isinstance(token, str) and token and isinstance(lifetime, int | float)
            and not isinstance(lifetime, bool) and lifetime > 0):
        return token, float(lifetime)
    text = (f"{data.get('error', '')} {data.get('sub_error', '')} "
            f"{data.get('error_description', '')}".strip()
            or raw[:200].decode("utf-8", "replace").strip() or "no reply body")
    if status == 429 or status >= 500:
        raise GatewayError(f"the Huawei token endpoint answered {status}: {text}",
                           code="oauth_unreachable", permanent=False)
    raise GatewayError(f"the Huawei token endpoint refused app {app_id} ({status}): {text}",
                       code="oauth_refused", permanent=False)


def _app_id(settings: Mapping[str, Any]) -> str:
    value = settings.get("app_id")
    return str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""


# --- the adapter ------------------------------------------------------------------------------

@register
class HmsGateway(HttpBatchGateway):
    provider = "hms"
    channels = frozenset({"push"})
    provider_label = "Push Kit"
    secret_settings = ("client_secret",)
    dead_address_codes = TOKEN_INVALID_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        if not _app_id(settings).isdigit():
            errors["app_id"] = ("required: the app's App ID from AppGallery Connect (Project "
                                "settings > App information), digits")
        secret = settings.get("client_secret")
        if not isinstance(secret, str) or not secret.strip():
            errors["client_secret"] = "required: the app's App secret from AppGallery Connect"
        for key, example in (("endpoint", HMS_ENDPOINT), ("token_url", HMS_TOKEN_URL)):
            if key in settings and not is_http_url(settings[key]):
                errors[key] = f"must be an http(s) URL, e.g. {example}"
        callback = {key: settings.get(key) for key in ("callback_user", "inbound_secret")}
        for key, value in callback.items():
            if value is not None and (not isinstance(value, str) or not value.strip()):
                errors[key] = "must be the text set in AppGallery Connect's receipt settings"
        if (callback["callback_user"] is None) != (callback["inbound_secret"] is None):
            missing = "callback_user" if callback["callback_user"] is None else "inbound_secret"
            errors[missing] = ("required with the other: Push Kit signs receipts only when "
                               "both the callback user name and key are set")
        return errors

    def open(self) -> None:
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        s = self.config.settings
        self._timeout = float(s.get("timeout", DEFAULT_TIMEOUT))
        self._url = (f"{str(s.get('endpoint') or HMS_ENDPOINT).rstrip('/')}"
                     f"/v1/{_app_id(s)}/messages:send")
        self._cached = self._token_entry()
        self._token = self._token_current()
        self._refresh_failure: GatewayError | None = None
        super().open()

    def health(self) -> tuple[bool, str]:
        """A fresh token from the token endpoint: the cached one would prove nothing."""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        self._timeout = float(self.config.settings.get("timeout", DEFAULT_TIMEOUT))
        self._cached = self._token_entry()
        try:
            with self._cached.lock:
                self._refresh()
        except GatewayError as error:
            return False, gateway_error_text(error)
        return True, f"OAuth token issued for app {_app_id(self.config.settings)}"

    # --- OAuth 2.0 ----------------------------------------------------------------------------

    def _token_entry(self) -> _AccessToken:
        s = self.config.settings
        fingerprint = hashlib.sha256(json.dumps(
            [s.get("token_url") or HMS_TOKEN_URL, _app_id(s), s.get("client_secret")]
        ).encode()).hexdigest()
        with _TOKENS_LOCK:
            entry = _TOKENS.get(self.config.gateway_id)
            if entry is None or entry.fingerprint != fingerprint:
                entry = _AccessToken(fingerprint, threading.Lock())
                _TOKENS[self.config.gateway_id] = entry
            return entry

    def _token_current(self) -> str:
        with self._cached.lock:
            if not self._cached.token or time.monotonic() >= self._cached.refresh_at:
                self._refresh()
            return self._cached.token

    def _token_replace(self, rejected: str) -> str:
        """A token Push Kit will take instead of `rejected`: one refresh however many requests
        ask, and no second try in this batch once the token endpoint has said no."""
        with self._cached.lock:
            if self._refresh_failure is not None:
                raise self._refresh_failure
            if self._cached.token == rejected:
                try:
                    self._refresh()
                except GatewayError as exc:
                    self._refresh_failure = exc
                    raise
            return self._cached.token

    def _refresh(self) -> None:
        s = self.config.settings
        token, lifetime = access_token_fetch(
            token_url=str(s.get("token_url") or HMS_TOKEN_URL), app_id=_app_id(s),
            client_secret=str(s["client_secret"]), timeout=self._timeout)
        self._cached.token = token
        self._cached.refresh_at = time.monotonic() + max(lifetime - REFRESH_MARGIN_S,
                                                         lifetime / 2)

    # --- sending ------------------------------------------------------------------------------

    async def _send_one(self, outbound: OutboundMessage) -> SendResult:
        token, scope = self._token, self._halt_scope(outbound)
        result = await super()._send_one(outbound)
        if result.error is None or result.error.code not in AUTH_CODES or scope in self._lost:
            return result
        try:
            self._token = await asyncio.to_thread(self._token_replace, token)
        except GatewayError as exc:
            # Without a token nothing else in the batch can go either.
            self._lost[scope] = GatewayError(f"not attempted: {exc.message}", code=exc.code,
                                             permanent=False)
            return SendResult(outbound.message_id, error=exc)
        result = await super()._send_one(outbound)
        if result.error is not None and result.error.code in AUTH_CODES \
                and scope not in self._lost:
            # A token fresh from the endpoint refused too: the app id and secret do not match.
            self._lost[scope] = GatewayError(f"not attempted: {result.error.message}",
                                             code=result.error.code, permanent=False)
        return result

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        return ProviderRequest("POST", self._url, message_json(outbound), {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json; charset=utf-8"})

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        data = reply.json()
        code = scalar_text(data.get("code")) if isinstance(data, dict) else None
        wait = self._flow_control_wait(reply)
        if code is None:
            if reply.status == 200:
                return SendResult(outbound.message_id, error=GatewayError(
                    f"an answer that is not Push Kit's JSON: {reply.snippet()}",
                    code="bad_answer", permanent=False, in_doubt=True))
            return SendResult(outbound.message_id, error=_http_error(reply, wait))
        msg = str(data.get("msg") or "")
        if code == PARTIAL_SUCCESS and outbound.address in _illegal_tokens(msg):
            code = TOKEN_INVALID
        elif code in (SUCCESS, PARTIAL_SUCCESS):
            return SendResult(outbound.message_id,
                              provider_id=scalar_text(data.get("requestId")) or "",
                              cost=self.config.price_per_message)
        return SendResult(outbound.message_id,
                          error=_code_error(code, msg or reply.snippet(), reply.status, wait))

    def _flow_control_wait(self, reply: ProviderReply) -> float | None:
        after = retry_after_seconds(reply.headers.get("Retry-After"))
        if reply.status in FLOW_CONTROL_STATUSES and after is None:
            return self._throttle_retry_after
        return after

    def _halts_batch(self, reply: ProviderReply, error: GatewayError) -> bool:
        # A refused token is refreshed (`_send_one`), not a reason to stop; flow control and
        # the app's configuration are every other message's answer too.
        if error.code in AUTH_CODES or error.permanent:
            return False
        return error.code in CONFIGURATION_CODES or reply.status in FLOW_CONTROL_STATUSES


# --- receipts ---------------------------------------------------------------------------------

def callback_id_value(*, user: str, key: str, timestamp: str, nonce: str) -> str:
    """The `value` of an X-HUAWEI-CALLBACK-ID header."""
    digest = hmac.new(key.encode(), f"{timestamp}{nonce}{user}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def callback_authentic(*, settings: Mapping[str, Any], header: str,
                       now: float | None = None) -> bool:
    """Whether an X-HUAWEI-CALLBACK-ID header was made with the gateway's callback user name
    and key, within CALLBACK_MAX_SKEW_S of `now` (Unix seconds)."""
    user, key = settings.get("callback_user"), settings.get("inbound_secret")
    if not isinstance(user, str) or not isinstance(key, str) or not user or not key:
        return False
    fields = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        fields[name.strip().lower()] = value.strip()
    timestamp, nonce, value = (fields.get(name, "") for name in ("timestamp", "nonce", "value"))
    if not timestamp.isdigit() or not nonce or not value:
        return False
    # Milliseconds in the current documentation, seconds in older versions.
    seconds = int(timestamp) / 1000 if len(timestamp) > 11 else int(timestamp)
    if abs((time.time() if now is None else now) - seconds) > CALLBACK_MAX_SKEW_S:
        return False
    expected = callback_id_value(user=user, key=key, timestamp=timestamp, nonce=nonce)
    return hmac.compare_digest(expected.encode(), value.encode())


def _receipt_time(timestamp: Any, received_at: datetime) -> datetime:
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        try:
            return datetime.fromtimestamp(timestamp / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return received_at


def receipts_read(body: bytes, *, app_id: str,
                  received_at: datetime) -> tuple[list[Receipt], int]:
    """The receipts in a Push Kit receipt call, and how many statuses said nothing final (held,
    or another app's: a project-level receipt URL gets every app's). ValueError naming the first
    status Engage cannot read."""
    payload = json.loads(body)
    statuses = payload.get("statuses") if isinstance(payload, dict) else None
    if not isinstance(statuses, list):
        raise ValueError("not a Push Kit receipt: an object with a list of statuses is expected")
    receipts: list[Receipt] = []
    ignored = 0
    for index, item in enumerate(statuses):
        if not isinstance(item, dict):
            raise ValueError(f"statuses[{index}]: must be an object")
        request_id = scalar_text(item.get("requestId"))
        status = item.get("status")
        if not request_id or len(request_id) > 200:
            raise ValueError(f"statuses[{index}]: the requestId (1 to 200 characters) is "
                             "required")
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError(f"statuses[{index}]: the status (a number) is required")
        if scalar_text(item.get("appid")) not in (None, app_id) or status in HELD_STATUSES:
            ignored += 1
            continue
        reason = RECEIPT_REASONS.get(status, "not delivered")
        bi_tag = scalar_text(item.get("biTag"))
        receipts.append(Receipt(
            provider_id=request_id, status="delivered" if status == 0 else "undelivered",
            occurred_at=_receipt_time(item.get("timestamp"), received_at), code=str(status),
            detail=f"{reason} (biTag {bi_tag})" if bi_tag else reason))
    return receipts, ignored

