"""SMS through a generic HTTP provider, and the concurrent-HTTP machinery HTTP adapters share.

Most regional SMS aggregators take one request per message (`POST /send` with the number, the
text and a sender id, as JSON or a form), answer with their own message id or an error code,
and later post a delivery report with their own words for the state. Their APIs differ only in
names, so one adapter configured by settings speaks all of them:

    {"url": "https://sms.example.net/api/send", "method": "POST", "format": "json",
     "auth": "bearer", "token": "...",
     "fields": {"phone": "msisdn", "text": "message", "sender": "from", "reference": "ref"},
     "extra_fields": {"route": "promo"}, "phone_format": "digits",
     "id_path": "result.id", "error_path": "error.code", "error_text_path": "error.text",
     "success_codes": ["0"], "permanent_codes": ["INVALID_MSISDN", "BLACKLISTED"],
     "inbound_secret": "...", "signature_header": "X-Signature",
     "receipt_id_field": "id", "receipt_status_field": "state", "receipt_code_field": "err",
     "receipt_time_field": "done_at", "receipt_statuses": {"DELIVRD": "delivered"}}

Sending: `url`, `method` (POST, PUT or GET; a GET carries the fields in the query string and
needs `format` form), `format` (json or form), `auth` (none, basic with `username` and
`password`, or bearer with `token` sent as `<auth_header>: <auth_scheme> <token>`, by default
`Authorization: Bearer <token>`; an empty `auth_scheme` sends the token alone, as in
`X-Api-Key: <token>`). `fields` names the request field for the phone and the text (required),
the gateway's sender id and our message id (optional); `extra_fields` are sent as they are with
every message. `phone_format` is e164 (`+4915...`, default) or digits (`4915...`).

The answer: `id_path` is where the provider's message id is in the JSON answer (dots between
keys, numbers for list items: `messages.0.id`); `error_path` and `error_text_path` where an error
code and its text are, `success_codes` the values at `error_path` that mean success (providers
that answer `"status": "0"` for success). Results, per message:
- a 2xx answer with no error code and an id: sent, `provider_id` the id.
- a 2xx answer with no error code and no id: in doubt (the provider may well have taken it, but
  no receipt could ever be matched to it), never resent.
- an error code (in a 2xx answer too: many aggregators answer 200 to every request): permanent
  when it is in `permanent_codes`, transient otherwise (a retry is bounded by the dispatcher).
- 429, 408 and 5xx: transient, `retry_after` from Retry-After (for 429 without one,
  `throttle_retry_after` seconds, default 1).
- 401: transient (credentials are fixed in the settings, after which the messages can go), and
  the rest of the batch is not attempted; any other 4xx without an error code: permanent.
- no connection: transient, and the rest of the batch is not attempted: it gets no result, so
  it goes back to the queue without spending an attempt; no answer after the request went out
  (read timeout, connection dropped): in doubt.

Delivery reports come to `hooks/http-sms/<gateway id>/receipts` (communications.webhooks_http_sms),
signed with the hex HMAC-SHA256 of the body under `inbound_secret`, in the header
`signature_header` (default X-Signature; a `sha256=` prefix is accepted). A report is a JSON
object, a JSON list of them, a list at `receipt_list_path` in a JSON object, or a form; its fields
are read at `receipt_id_field` (default id), `receipt_status_field` (default status) and
optionally `receipt_code_field` and `receipt_time_field` (ISO 8601 or Unix seconds; the time of
arrival when absent). `receipt_statuses` maps the provider's words to Engage's (delivered,
undelivered, expired, rejected, or "" for a state to ignore such as ENROUTE); without it the
SMPP receipt words and their plain-English forms are understood (DEFAULT_RECEIPT_STATUSES).

Concurrency: `concurrency` requests in flight over one aiohttp session (default 16), `timeout`
seconds for an answer (default 10), `connect_timeout` (default 5). `HttpBatchGateway` is that
machinery without the provider: Twilio builds on it, and so can a messenger adapter. The health
probe only connects to the provider's host: the one request a generic provider offers sends an
SMS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from communications.gateways.base import (
    BaseGateway,
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
    event_loop_new,
    register,
    send_concurrently,
)
from config.retry_after import retry_after_seconds
from config.ssrf import PrivateAddressRefused

DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_THROTTLE_RETRY_AFTER = 1.0
DEFAULT_SIGNATURE_HEADER = "X-Signature"
SIGNATURE_PREFIX = "sha256="

# What an SMS provider can say about a message it took (a subset of Message.Status: an SMS is
# never opened, clicked or bounced).
SMS_RECEIPT_STATUSES = ("delivered", "undelivered", "expired", "rejected")
# The SMPP receipt words (most aggregators pass the SMSC's on) and their plain forms.
DEFAULT_RECEIPT_STATUSES: dict[str, str] = {
    "DELIVRD": "delivered", "DELIVERED": "delivered",
    "UNDELIV": "undelivered", "UNDELIVERED": "undelivered", "FAILED": "undelivered",
    "EXPIRED": "expired",
    "REJECTD": "rejected", "REJECTED": "rejected",
    "ACCEPTD": "", "ACCEPTED": "", "ENROUTE": "", "SENT": "", "QUEUED": "", "UNKNOWN": "",
    "DELETED": "",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHODS = ("POST", "PUT", "GET")


# --- shared pieces ------------------------------------------------------------------------------

def json_path_get(data: Any, path: str) -> Any:
    """The value at a dotted path (`messages.0.id`), or None where the path leads nowhere."""
    for key in path.split("."):
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and key.lstrip("-").isdigit():
            index = int(key)
            data = data[index] if -len(data) <= index < len(data) else None
        else:
            return None
        if data is None:
            return None
    return data


def scalar_text(value: Any) -> str | None:
    """A code or id read from an answer as text (`7` and `"7"` alike), None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        return str(value)
    return None


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _seconds_ok(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 300


def transport_settings_errors(settings: Mapping[str, Any]) -> dict[str, str]:
    """Problems with the settings every HTTP adapter shares."""
    errors: dict[str, str] = {}
    concurrency = settings.get("concurrency", DEFAULT_CONCURRENCY)
    if (not isinstance(concurrency, int) or isinstance(concurrency, bool)
            or not 1 <= concurrency <= 1000):
        errors["concurrency"] = "must be a whole number of requests in flight, 1 to 1000"
    for key in ("timeout", "connect_timeout", "throttle_retry_after"):
        if key in settings and not _seconds_ok(settings[key]):
            errors[key] = "must be a number of seconds above 0 and at most 300"
    return errors


@dataclass(frozen=True)
class ProviderRequest:
    method: str
    url: str
    body: bytes | None
    headers: Mapping[str, str]


@dataclass(frozen=True)
class ProviderReply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def snippet(self) -> str:
        return self.body[:200].decode("utf-8", "replace").strip() or "no reply body"


class HttpBatchGateway(BaseGateway):
    """One aiohttp session per batch with `concurrency` requests in flight (see fcm.py for why
    aiohttp), one request per message. A subclass builds the request (`_request`) and reads the
    answer (`_result`); connection failures and timeouts are classified here, once.

    A 401 (the provider refused the gateway's credentials) leaves the rest of the batch unsent,
    each with a transient "not attempted" error: they would all be refused the same way (the
    rest to the same host, for an adapter whose batch goes to several: `_halt_scope`).
    """

    provider_label: ClassVar[str] = "the provider"

    def _settings_problem(self) -> GatewayError | None:
        errors = self.settings_errors(self.config.settings)
        if not errors:
            return None
        return GatewayError(f"invalid {self.provider} settings: " + "; ".join(
            f"{name}: {text}" for name, text in sorted(errors.items())),
            code="settings", permanent=True)

    def open(self) -> None:
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        s = self.config.settings
        self._concurrency = int(s.get("concurrency", DEFAULT_CONCURRENCY))
        self._throttle_retry_after = float(s.get("throttle_retry_after",
                                                 DEFAULT_THROTTLE_RETRY_AFTER))
        self._lost: dict[str, GatewayError] = {}  # by halt scope (see _halt_scope)
        self._unreachable: set[str] = set()  # halt scopes whose host refused to connect
        self._loop = event_loop_new()
        self._session = self._loop.run_until_complete(self._session_open(
            connect_timeout=float(s.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            timeout=float(s.get("timeout", DEFAULT_TIMEOUT))))

    def close(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        try:
            loop.run_until_complete(self._session.close())
        except Exception:  # noqa: BLE001  (closing must not mask the batch result)
            pass
        finally:
            loop.close()
            self._loop = None

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return self._loop.run_until_complete(self._send_batch(batch))

    def health(self) -> tuple[bool, str]:
        """Whether the provider's host accepts a connection (TLS included for https). No
        request is made: the only one a generic provider offers sends an SMS, so credentials
        are first checked by a send (a test send from the admin)."""
        problem = self._settings_problem()
        if problem is not None:
            return False, problem.message
        parts = urlsplit(self._health_url())
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        timeout = float(self.config.settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))

        async def connect() -> None:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=parts.scheme == "https" or None), timeout)
            writer.close()

        try:
            asyncio.run(connect())
        except (OSError, TimeoutError) as exc:
            return False, f"cannot connect to {host}:{port}: {exc!r}"
        return True, f"{host}:{port} accepts connections"

    # --- what a provider module fills in ------------------------------------------------------

    def _health_url(self) -> str:
        raise NotImplementedError

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        raise NotImplementedError

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        raise NotImplementedError

    # --- the machinery ------------------------------------------------------------------------

    async def _session_open(self, *, connect_timeout: float,
                            timeout: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency, resolver=self._resolver()),
            # sock_read, not total: a timeout while waiting for the answer is told apart from
            # one while connecting, because only the first can hide an accepted message.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                          sock_read=timeout),
        )

    async def _send_batch(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return await send_concurrently(batch, self._send_one, concurrency=self._concurrency)

    async def _send_one(self, outbound: OutboundMessage) -> SendResult | None:
        scope = self._halt_scope(outbound)
        if scope in self._unreachable:
            return None  # not attempted: back to the queue, no attempt spent
        if scope in self._lost:
            return SendResult(outbound.message_id, error=self._lost[scope])
        try:
            request = self._request(outbound)
        except GatewayError as exc:
            return SendResult(outbound.message_id, error=exc)
        label = self.provider_label
        try:
            reply = await self._exchange(request)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            refused = getattr(exc, "os_error", None)
            if isinstance(refused, PrivateAddressRefused):
                # The host itself may not be called: the rest to it neither, and for good.
                error = GatewayError(str(refused), code="private_address", permanent=True)
                self._lost[scope] = error
                return SendResult(outbound.message_id, error=error)
            # Nothing went out; the rest of the batch would fail the same way, so it is not
            # attempted and keeps its attempts.
            self._unreachable.add(scope)
            return SendResult(outbound.message_id, error=GatewayError(
                f"cannot connect to {label}: {exc}", code="connect_failed", permanent=False))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(outbound.message_id, error=GatewayError(
                f"no answer from {label} after the message was sent: {exc!r}",
                code="no_answer", permanent=False, in_doubt=True))
        result = self._result(outbound, reply)
        error = result.error
        if error is not None and scope not in self._lost and self._halts_batch(reply, error):
            # The rest of the batch is not attempted, each message carrying the same code
            # and wait.
            self._lost[scope] = GatewayError(f"not attempted: {error.message}", code=error.code,
                                             permanent=False, retry_after=error.retry_after)
        return result

    def _resolver(self) -> AbstractResolver | None:
        """How the session resolves host names: aiohttp's own (None), unless the adapter calls
        addresses someone outside the staff chose (web push: PublicAddressResolver)."""
        return None

    def _halt_scope(self, outbound: OutboundMessage) -> str:
        """Which messages a halt stops: "" (the default) the whole batch, as it goes to one
        provider. An adapter whose batch goes to several hosts (web push: each subscription
        names its push service) names the host, so one host's refusal stops only its own."""
        return ""

    def _halts_batch(self, reply: ProviderReply, error: GatewayError) -> bool:
        """Whether this answer would be every other message's too: credentials refused.
        Providers that say "stop" in other ways (a throttle) add theirs."""
        return reply.status == 401

    async def _exchange(self, request: ProviderRequest) -> ProviderReply:
        async with self._session.request(request.method, request.url, data=request.body,
                                         headers=request.headers) as response:
            return ProviderReply(response.status, response.headers, await response.read())

    def _throttled(self, reply: ProviderReply) -> float | None:
        """Retry-After for a 429, 408 or 5xx answer; 429 always gets one."""
        after = retry_after_seconds(reply.headers.get("Retry-After"))
        if reply.status == 429 and after is None:
            return self._throttle_retry_after
        return after


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# --- the generic provider -----------------------------------------------------------------------

def _field_names_errors(fields: Any) -> dict[str, str]:
    if not isinstance(fields, dict):
        return {"fields": 'required: an object naming the request fields, e.g. {"phone": "to", '
                          '"text": "text", "sender": "from"}'}
    errors: dict[str, str] = {}
    unknown = sorted(set(fields) - {"phone", "text", "sender", "reference"})
    if unknown:
        errors["fields"] = (f"unknown key(s) {', '.join(unknown)}; known: phone, text, sender, "
                            "reference")
    for key in ("phone", "text"):
        if not isinstance(fields.get(key), str) or not fields[key].strip():
            errors[f"fields.{key}"] = f"required: the request field that carries the {key}"
    for key in ("sender", "reference"):
        if key in fields and (not isinstance(fields[key], str) or not fields[key].strip()):
            errors[f"fields.{key}"] = "must be a field name"
    names = [name for name in fields.values() if isinstance(name, str)]
    if len(names) != len(set(names)):
        errors.setdefault("fields", "two of them name the same request field")
    return errors


def _code_list_error(value: Any) -> str:
    if not isinstance(value, list) or not all(
            isinstance(code, str | int) and not isinstance(code, bool) for code in value):
        return "must be a list of codes (text or numbers)"
    return ""


def http_sms_settings_errors(settings: Mapping[str, Any]) -> dict[str, str]:
    errors = transport_settings_errors(settings)
    if not is_http_url(settings.get("url")):
        errors["url"] = "required: the provider's send URL, http(s)://..."
    method = settings.get("method", "POST")
    if method not in _METHODS:
        errors["method"] = f"must be one of {', '.join(_METHODS)}"
    request_format = settings.get("format", "json")
    if request_format not in ("json", "form"):
        errors["format"] = "must be json or form"
    elif method == "GET" and request_format != "form":
        errors["format"] = "a GET sends its fields in the query string: set format to form"
    auth = settings.get("auth", "none")
    if auth not in ("none", "basic", "bearer"):
        errors["auth"] = "must be none, basic or bearer"
    elif auth == "basic":
        for key in ("username", "password"):
            if not isinstance(settings.get(key), str) or not settings[key]:
                errors[key] = "required with basic auth"
    elif auth == "bearer":
        if not isinstance(settings.get("token"), str) or not settings["token"]:
            errors["token"] = "required with bearer auth"
        header = settings.get("auth_header", "Authorization")
        if not isinstance(header, str) or not _HEADER_NAME.match(header):
            errors["auth_header"] = "must be an HTTP header name"
        if not isinstance(settings.get("auth_scheme", "Bearer"), str):
            errors["auth_scheme"] = 'must be text, e.g. "Bearer", or "" for the token alone'
    errors.update(_field_names_errors(settings.get("fields")))
    extra = settings.get("extra_fields", {})
    if not isinstance(extra, dict) or not all(
            isinstance(value, str | int | float | bool) for value in extra.values()):
        errors["extra_fields"] = "must be an object of field names to text or number values"
    elif isinstance(settings.get("fields"), dict) and set(extra) & set(
            name for name in settings["fields"].values() if isinstance(name, str)):
        errors["extra_fields"] = "must not repeat a field named in fields"
    if settings.get("phone_format", "e164") not in ("e164", "digits"):
        errors["phone_format"] = "must be e164 (+4915...) or digits (4915...)"
    if not isinstance(settings.get("id_path"), str) or not settings["id_path"].strip():
        errors["id_path"] = ("required: where the provider's message id is in its JSON answer, "
                             "e.g. messages.0.id")
    for key in ("error_path", "error_text_path"):
        if key in settings and (not isinstance(settings[key], str) or not settings[key].strip()):
            errors[key] = "must be a dotted path in the JSON answer, e.g. error.code"
    for key in ("success_codes", "permanent_codes"):
        if key in settings and _code_list_error(settings[key]):
            errors[key] = _code_list_error(settings[key])
    if ("success_codes" in settings or "permanent_codes" in settings) and \
            "error_path" not in settings:
        errors["error_path"] = "required with success_codes or permanent_codes"
    errors.update(_receipt_settings_errors(settings))
    return errors


def _receipt_settings_errors(settings: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if "inbound_secret" in settings and (not isinstance(settings["inbound_secret"], str)
                                         or len(settings["inbound_secret"]) < 16):
        errors["inbound_secret"] = ("must be a shared secret of at least 16 characters (it "
                                    "signs the delivery reports)")
    header = settings.get("signature_header", DEFAULT_SIGNATURE_HEADER)
    if not isinstance(header, str) or not _HEADER_NAME.match(header):
        errors["signature_header"] = "must be an HTTP header name"
    for key in ("receipt_id_field", "receipt_status_field", "receipt_code_field",
                "receipt_time_field", "receipt_list_path"):
        if key in settings and (not isinstance(settings[key], str) or not settings[key].strip()):
            errors[key] = "must be a field name or dotted path"
    statuses = settings.get("receipt_statuses", DEFAULT_RECEIPT_STATUSES)
    if not isinstance(statuses, dict) or not statuses:
        errors["receipt_statuses"] = ('must map the provider\'s words to Engage statuses, e.g. '
                                      '{"DELIVRD": "delivered"}')
    else:
        wrong = sorted(word for word, status in statuses.items()
                       if status not in (*SMS_RECEIPT_STATUSES, ""))
        if wrong:
            errors["receipt_statuses"] = (
                f"{', '.join(wrong)}: must map to one of {', '.join(SMS_RECEIPT_STATUSES)}, "
                "or \"\" for a state to ignore")
    return errors


@register
class HttpSmsGateway(HttpBatchGateway):
    provider = "http_sms"
    channels = frozenset({"sms"})
    provider_label = "the SMS provider"
    secret_settings = ("password", "token")

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        return http_sms_settings_errors(settings)

    def open(self) -> None:
        super().open()
        s = self.config.settings
        self._method = s.get("method", "POST")
        self._format = s.get("format", "json")
        self._fields: dict[str, str] = dict(s["fields"])
        self._extra = {name: (str(value).lower() if isinstance(value, bool) and
                              self._format == "form" else value)
                       for name, value in s.get("extra_fields", {}).items()}
        self._digits = s.get("phone_format", "e164") == "digits"
        self._headers: dict[str, str] = {}
        if self._format == "json" and self._method != "GET":
            self._headers["Content-Type"] = "application/json; charset=utf-8"
        elif self._method != "GET":
            self._headers["Content-Type"] = "application/x-www-form-urlencoded"
        auth = s.get("auth", "none")
        if auth == "basic":
            self._headers["Authorization"] = basic_authorization(s["username"], s["password"])
        elif auth == "bearer":
            scheme = s.get("auth_scheme", "Bearer")
            self._headers[s.get("auth_header", "Authorization")] = (
                f"{scheme} {s['token']}" if scheme else s["token"])
        self._error_path: str | None = s.get("error_path")
        self._success = {str(code) for code in s.get("success_codes", [])}
        self._permanent = {str(code) for code in s.get("permanent_codes", [])}

    def _health_url(self) -> str:
        return str(self.config.settings["url"])

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        phone = outbound.address.lstrip("+") if self._digits else outbound.address
        values: dict[str, Any] = {**self._extra, self._fields["phone"]: phone,
                                  self._fields["text"]: outbound.body}
        if "sender" in self._fields and self.config.sender:
            values[self._fields["sender"]] = self.config.sender
        if "reference" in self._fields:
            values[self._fields["reference"]] = str(outbound.message_id)
        url = self.config.settings["url"]
        if self._method == "GET":
            separator = "&" if urlsplit(url).query else "?"
            return ProviderRequest("GET", f"{url}{separator}{urlencode(values)}", None,
                                   self._headers)
        body = (json.dumps(values, ensure_ascii=False).encode() if self._format == "json"
                else urlencode(values).encode())
        return ProviderRequest(self._method, url, body, self._headers)

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        s = self.config.settings
        data = reply.json()
        code = scalar_text(json_path_get(data, self._error_path)) if self._error_path else None
        if code is not None and (code in self._success or code == ""):
            code = None
        text = scalar_text(json_path_get(data, s["error_text_path"])) \
            if s.get("error_text_path") else None
        text = text or reply.snippet()
        if 200 <= reply.status < 300 and code is None:
            provider_id = scalar_text(json_path_get(data, s["id_path"]))
            if not provider_id:
                return SendResult(outbound.message_id, error=GatewayError(
                    f"{reply.status}: the provider answered without a message id at "
                    f"{s['id_path']!r}: {reply.snippet()}", code="no_provider_id",
                    permanent=False, in_doubt=True))
            return SendResult(outbound.message_id, provider_id=provider_id,
                              cost=self.config.price_per_message)
        if reply.status in (408, 429) or reply.status >= 500:
            return SendResult(outbound.message_id, error=GatewayError(
                f"{reply.status} {code or ''}: {text}".replace(" :", ":"),
                code=code or f"HTTP_{reply.status}", permanent=False,
                retry_after=self._throttled(reply)))
        if reply.status == 401:
            return SendResult(outbound.message_id, error=GatewayError(
                f"401: the provider refused the gateway's credentials: {text}",
                code=code or "auth_refused", permanent=False))
        if code is not None:
            return SendResult(outbound.message_id, error=GatewayError(
                f"{reply.status} {code}: {text}", code=code, permanent=code in self._permanent))
        return SendResult(outbound.message_id, error=GatewayError(
            f"{reply.status}: {text}", code=f"HTTP_{reply.status}", permanent=True))


# --- delivery reports ---------------------------------------------------------------------------

def receipt_signature(*, secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of a delivery report's body, as the provider must send it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def receipt_signature_valid(*, settings: Mapping[str, Any], body: bytes, header: str) -> bool:
    secret = settings.get("inbound_secret")
    if not isinstance(secret, str) or not secret:
        return False
    given = header.strip()
    if given.lower().startswith(SIGNATURE_PREFIX):
        given = given[len(SIGNATURE_PREFIX):]
    expected = receipt_signature(secret=secret, body=body)
    return hmac.compare_digest(expected.encode(), given.lower().encode())


class ReceiptsUnreadable(ValueError):
    """A delivery report the settings cannot read; `errors` by item index and field."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(str(errors))
        self.errors = errors


def _receipt_time(value: Any, received_at: datetime) -> datetime:
    # A provider's clock or format is not worth refusing a receipt over: the status matters.
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return received_at
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return _receipt_time(int(text), received_at)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return received_at
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return received_at


def receipts_read(*, settings: Mapping[str, Any], items: Sequence[Mapping[str, Any]],
                  received_at: datetime) -> tuple[list[Receipt], int]:
    """The receipts in a provider's delivery reports, and how many reported a state that says
    nothing final (ENROUTE, a word `receipt_statuses` does not know). Raises ReceiptsUnreadable
    naming each report without an id or a state."""
    statuses = {str(word).upper(): status for word, status in
                settings.get("receipt_statuses", DEFAULT_RECEIPT_STATUSES).items()}
    id_field = settings.get("receipt_id_field", "id")
    status_field = settings.get("receipt_status_field", "status")
    code_field, time_field = settings.get("receipt_code_field"), settings.get("receipt_time_field")
    receipts: list[Receipt] = []
    ignored = 0
    errors: dict[str, Any] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            errors[str(index)] = {"receipt": "must be an object"}
            continue
        provider_id = scalar_text(json_path_get(item, id_field))
        word = scalar_text(json_path_get(item, status_field))
        problems = {}
        if not provider_id or len(provider_id) > 200:
            problems[id_field] = "the provider's message id (1 to 200 characters) is required"
        if not word:
            problems[status_field] = "the message's state is required"
        if problems:
            errors[str(index)] = problems
            continue
        status = statuses.get(cast(str, word).upper(), "")
        if not status:
            ignored += 1
            continue
        code = scalar_text(json_path_get(item, code_field)) if code_field else None
        receipts.append(Receipt(
            provider_id=cast(str, provider_id), status=status,
            occurred_at=_receipt_time(json_path_get(item, time_field) if time_field else None,
                                      received_at),
            code=(code or cast(str, word))[:64], detail=f"provider state {word}"))
    if errors:
        raise ReceiptsUnreadable(errors)
    return receipts, ignored


def receipt_items(*, settings: Mapping[str, Any], body: Any) -> list[Any]:
    """The reports in a parsed body: one object, a list, or a list at `receipt_list_path`."""
    list_path = settings.get("receipt_list_path")
    if list_path and isinstance(body, dict):
        found = json_path_get(body, list_path)
        if not isinstance(found, list):
            raise ReceiptsUnreadable({"body": f"no list of reports at {list_path!r}"})
        return found
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    raise ReceiptsUnreadable({"body": "must be a JSON object or list, or a form"})
