"""Push to Apple devices through the APNs provider API: HTTP/2 over TLS, token-based auth.

Each push is one `POST /3/device/<device token>` on a long-lived HTTP/2 connection, with the
headers `apns-topic` (the app's bundle id), `apns-push-type: alert`, `apns-priority`,
`apns-expiration` and `apns-id`, the UUID APNs echoes and reports by: Engage derives it from
its message id (the last 12 hex digits are the id), so an apns-id maps back to its message. A
batch goes out as `concurrency` streams in flight on one connection, as Apple asks providers to
do rather than opening many. The payload is `aps.alert` {title, body}, `mutable-content: 1`
when there is an image (the app's notification service extension fetches it), and push_data()
(link, image, template data, engage_message_id) at the top level.

The client is httpcore, the HTTP/2 transport under httpx (same maintainers, a stable 1.0 API),
on the h2 state machine: every part of the connection is a setting (the endpoint, the CA to
trust), which tests need to reach the loopback peer without patching, and it keeps the stream
bookkeeping of HTTP/2 (MAX_CONCURRENT_STREAMS, flow control, GOAWAY). httpx's own layer (URL and
header models, cookies, redirects) measured 40% more CPU per push for nothing APNs needs.
aioapns, the APNs-specific alternative, has the production and sandbox hosts written in, renews
the token on its own schedule only, and silently resends a push whose connection closed, which
would push twice what Engage must report in doubt. Pure-Python HTTP/2 is not cheap: h2's
framing and HPACK alone cost about 0.3 ms of CPU per request on each side, a fifth of it the JWT,
huffman-coded on every request since HPACK never indexes an authorization header (bench/apns.py
says what that makes in pushes/s).

The provider token: an ES256 JWT (header `kid` the key id, claims `iss` the team id and `iat`)
signed with the .p8 key (PyJWT). Apple refuses a token older than an hour and one renewed more
often than every 20 minutes, so the token is kept per gateway id for the life of the process
and renewed at 50 minutes (checked at each open), or once per batch when APNs answers 403
ExpiredProviderToken to it.

Settings: team_id, key_id, private_key (the PEM text of the .p8; secret), topic, endpoint
(default https://api.push.apple.com; the sandbox is https://api.sandbox.push.apple.com),
ca_file (a PEM CA bundle to trust instead of certifi's), concurrency (streams in flight,
default 64), timeout (seconds to wait for an answer, default 10), connect_timeout (default 5),
priority (10: at once, default; 5: as the device's power allows), time_to_live (seconds APNs
keeps trying an offline device, default a day; 0: once only).

Results, per message:
- 200: sent, `provider_id` the apns-id.
- 400 BadDeviceToken and DeviceTokenNotForTopic, 410 Unregistered and ExpiredToken: permanent,
  in DEAD_TOKEN_CODES, on which the device is deactivated. An address with characters no
  device token has (they would change the request path) is BadDeviceToken without a request.
  Other 400s (BadTopic, TopicDisallowed, PayloadEmpty, ...), 404, 405 and 413 PayloadTooLarge:
  permanent, the device kept.
- 403 (InvalidProviderToken, a wrong key, key id or team id, and the rest): transient, since the
  messages can go once the gateway's settings are fixed, and the rest of the batch is not
  attempted (it would be refused the same way). ExpiredProviderToken first renews the token
  and sends again.
- 429 TooManyRequests (too many pushes to one device), 500 and 503: transient, `retry_after`
  from Retry-After or THROTTLE_RETRY_AFTER for a 429 (APNs sends none);
  TooManyProviderTokenUpdates also stops the batch.
- No connection (refused, TLS, connect timeout): transient, the rest of the batch not attempted.
  No answer after the request went out (read timeout, connection lost): `in_doubt`; APNs does
  not deduplicate on apns-id, so a resend could push twice.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import h2.connection
import h2.events
import h2.exceptions
import httpcore
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from communications.gateways.base import (
    BaseGateway,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_error_text,
    push_data,
    register,
    retry_after_seconds,
    send_concurrently,
)
from communications.gateways.http_sms import transport_settings_errors

APNS_ENDPOINT = "https://api.push.apple.com"
APNS_SANDBOX_ENDPOINT = "https://api.sandbox.push.apple.com"
# The device will never take a push of this app again: the caller deactivates it.
DEAD_TOKEN_CODES = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered",
                              "ExpiredToken"})
# Answers after which nothing else in the batch can go either.
_HALTING_REASONS = frozenset({"TooManyProviderTokenUpdates"})
PROVIDER_TOKEN_RENEW_AFTER = 50 * 60
# APNs's 429 is about one device getting too many pushes and carries no Retry-After.
THROTTLE_RETRY_AFTER = 60.0
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_PRIORITY = 10
DEFAULT_TIME_TO_LIVE = 86_400
_APPLE_ID = re.compile(r"^[A-Z0-9]{10}$")
# What may stand in the request path as a device token: Apple's are hex; a character outside
# this set would change the request itself.
_DEVICE_TOKEN = re.compile(r"^[0-9A-Za-z:._-]{1,200}$")


def apns_id(message_id: int) -> str:
    """The apns-id of a message: a UUID (RFC 9562 version 8) ending in the message id."""
    return f"00000000-0000-8000-8000-{message_id:012x}"


def _private_key_problem(pem: Any) -> str:
    if not isinstance(pem, str) or not pem.strip():
        return "required: the text of the .p8 key file from the Apple developer account"
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        return f"does not parse as a PEM private key ({exc})"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return "must be a P-256 (ES256) key, as Apple issues for APNs"
    return ""


def _ca_file_problem(path: Any) -> str:
    if not isinstance(path, str) or not path:
        return "must be the path of a PEM CA bundle"
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot be loaded as a CA bundle ({exc})"
    return ""


def _payload(outbound: OutboundMessage) -> bytes:
    alert = {}
    if outbound.subject:
        alert["title"] = outbound.subject
    if outbound.body:
        alert["body"] = outbound.body
    aps: dict[str, Any] = {"alert": alert}
    if outbound.image_url:
        aps["mutable-content"] = 1
    return json.dumps({**push_data(outbound), "aps": aps}, ensure_ascii=False).encode()


def _reply_error(status: int, headers: Mapping[bytes, bytes], raw: bytes) -> GatewayError:
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    reason = str(answer.get("reason") or f"HTTP_{status}")
    text = f"{status} {reason}"
    if isinstance(answer.get("timestamp"), int):
        # When APNs learnt the token is no longer valid, in milliseconds since the epoch.
        since = time.gmtime(answer["timestamp"] / 1000)
        text += f", the device token invalid since {time.strftime('%Y-%m-%d %H:%M UTC', since)}"
    if status == 403:
        return GatewayError(f"APNs refused the provider token: {text}", code=reason,
                            permanent=False)
    if status == 429 or status >= 500:
        after = retry_after_seconds(headers.get(b"retry-after", b"").decode("latin-1"))
        return GatewayError(text, code=reason, permanent=False,
                            retry_after=THROTTLE_RETRY_AFTER if after is None and status == 429
                            else after)
    return GatewayError(text, code=reason, permanent=True)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    """The TLS context trusting `ca_file` (certifi's bundle by default, as httpx's), made once
    per process: loading a bundle costs tens of milliseconds, a good part of a small batch."""
    return ssl.create_default_context(cafile=ca_file)


@dataclass(frozen=True)
class _ProviderToken:
    fingerprint: str
    jwt: str
    issued_at: float  # time.time()


# One per gateway id for the life of the process, shared by every batch a worker sends.
_PROVIDER_TOKENS: dict[int, _ProviderToken] = {}
_PROVIDER_TOKENS_LOCK = threading.Lock()


@register
class ApnsGateway(BaseGateway):
    provider = "apns"
    channels = frozenset({"push"})
    secret_settings = ("private_key",)
    dead_address_codes = DEAD_TOKEN_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        for key, what in (("team_id", "Team ID"), ("key_id", "Key ID")):
            if not isinstance(settings.get(key), str) or not _APPLE_ID.match(settings[key]):
                errors[key] = f"required: the 10-character {what} from the Apple developer account"
        problem = _private_key_problem(settings.get("private_key"))
        if problem:
            errors["private_key"] = problem
        topic = settings.get("topic")
        if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
            errors["topic"] = "required: the app's bundle id, e.g. club.engage.app"
        endpoint = settings.get("endpoint", APNS_ENDPOINT)
        if (not isinstance(endpoint, str) or urlsplit(endpoint).scheme != "https"
                or not urlsplit(endpoint).hostname):
            errors["endpoint"] = f"must be an https URL, e.g. {APNS_ENDPOINT}"
        if "ca_file" in settings and _ca_file_problem(settings["ca_file"]):
            errors["ca_file"] = _ca_file_problem(settings["ca_file"])
        if settings.get("priority", DEFAULT_PRIORITY) not in (5, 10):
            errors["priority"] = "must be 10 (deliver at once) or 5 (as the device's power allows)"
        ttl = settings.get("time_to_live", DEFAULT_TIME_TO_LIVE)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            errors["time_to_live"] = "must be a whole number of seconds, 0 or more"
        return errors

    def _settings_problem(self) -> GatewayError | None:
        errors = self.settings_errors(self.config.settings)
        if not errors:
            return None
        return GatewayError("invalid apns settings: " + "; ".join(
            f"{name}: {text}" for name, text in sorted(errors.items())),
            code="settings", permanent=True)

    def _ssl_context(self) -> ssl.SSLContext:
        return _ssl_context(str(self.config.settings.get("ca_file") or certifi.where()))

    def open(self) -> None:
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        s = self.config.settings
        self._concurrency = int(s.get("concurrency", DEFAULT_CONCURRENCY))
        self._base = (str(s.get("endpoint") or APNS_ENDPOINT).rstrip("/") + "/3/device/").encode()
        ttl = int(s.get("time_to_live", DEFAULT_TIME_TO_LIVE))
        self._headers = [(b"apns-topic", str(s["topic"]).encode()),
                         (b"apns-push-type", b"alert"),
                         (b"apns-priority", str(s.get("priority", DEFAULT_PRIORITY)).encode()),
                         (b"apns-expiration", str(int(time.time()) + ttl if ttl else 0).encode())]
        timeout = float(s.get("timeout", DEFAULT_TIMEOUT))
        connect_timeout = float(s.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        # A request waiting for the connection to open waits no longer than the open may take.
        self._extensions = {"timeout": {"connect": connect_timeout, "pool": connect_timeout,
                                        "read": timeout, "write": timeout}}
        self._token = self._provider_token()
        self._renewed = False
        self._lost: GatewayError | None = None
        # One connection: its streams carry the batch.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context(), max_connections=1, http1=False, http2=True)
        self._loop = asyncio.new_event_loop()

    def close(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        try:
            loop.run_until_complete(self._pool.aclose())
        except Exception:  # noqa: BLE001  (closing must not mask the batch result)
            pass
        finally:
            loop.close()
            self._loop = None

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return self._loop.run_until_complete(
            send_concurrently(batch, self._send_one, concurrency=self._concurrency))

    def health(self) -> tuple[bool, str]:
        """The TLS handshake with the endpoint (its certificate verified), HTTP/2 agreed by
        ALPN and the server's SETTINGS received, and a provider token signed with the key.
        Whether Apple accepts the key id and team id shows only with a push: APNs has no
        request that checks a token without sending one."""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        s = self.config.settings
        self._provider_token()
        parts = urlsplit(str(s.get("endpoint") or APNS_ENDPOINT))
        host, port = parts.hostname or "", parts.port or 443
        try:
            streams = asyncio.run(_http2_handshake(
                host, port, self._ssl_context(),
                float(s.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))))
        except (OSError, TimeoutError, h2.exceptions.ProtocolError) as exc:
            return False, f"transient: no HTTP/2 over TLS with {host}:{port}: {exc!r}"
        return True, (f"TLS and HTTP/2 with {host}:{port} (up to {streams} streams per "
                      f"connection); provider token signed by key {s['key_id']} for team "
                      f"{s['team_id']}")

    # --- the provider token -------------------------------------------------------------------

    def _provider_token(self, *, rejected: str = "") -> str:
        """The cached JWT, or a new one when it is 50 minutes old, the settings changed, or it
        is `rejected` (another stream may already have renewed it: then that one)."""
        s = self.config.settings
        fingerprint = hashlib.sha256(
            json.dumps([s["team_id"], s["key_id"], s["private_key"]]).encode()).hexdigest()
        now = time.time()
        with _PROVIDER_TOKENS_LOCK:
            cached = _PROVIDER_TOKENS.get(self.config.gateway_id)
            if (cached is not None and cached.fingerprint == fingerprint
                    and now - cached.issued_at < PROVIDER_TOKEN_RENEW_AFTER
                    and cached.jwt != rejected):
                return cached.jwt
            token = jwt.encode({"iss": s["team_id"], "iat": int(now)}, s["private_key"],
                               algorithm="ES256", headers={"kid": s["key_id"]})
            _PROVIDER_TOKENS[self.config.gateway_id] = _ProviderToken(fingerprint, token, now)
            return token

    # --- sending ------------------------------------------------------------------------------

    async def _send_one(self, outbound: OutboundMessage) -> SendResult:
        if self._lost is not None:
            return SendResult(outbound.message_id, error=self._lost)
        if not _DEVICE_TOKEN.match(outbound.address):
            return SendResult(outbound.message_id, error=GatewayError(
                f"{outbound.address[:80]!r} is not an APNs device token (hex digits)",
                code="BadDeviceToken", permanent=True))
        body = _payload(outbound)
        token = self._token
        result, status = await self._post(outbound, body, token)
        if status == 403 and result.error and result.error.code == "ExpiredProviderToken":
            if token == self._token and not self._renewed:
                self._renewed = True
                self._token = self._provider_token(rejected=token)
            if token != self._token:
                result, status = await self._post(outbound, body, self._token)
        error = result.error
        if error is not None and self._lost is None and (
                status == 403 or error.code in _HALTING_REASONS):
            self._lost = GatewayError(f"not attempted: {error.message}", code=error.code,
                                      permanent=False, retry_after=error.retry_after)
        return result

    async def _post(self, outbound: OutboundMessage, body: bytes,
                    token: str) -> tuple[SendResult, int]:
        """The result and APNs's HTTP status (0 when there was no answer)."""
        message_apns_id = apns_id(outbound.message_id)
        try:
            response = await self._pool.request(
                b"POST", self._base + outbound.address.encode(), content=body,
                headers=[*self._headers, (b"apns-id", message_apns_id.encode()),
                         (b"authorization", b"bearer " + token.encode())],
                extensions=self._extensions)
        except (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout) as exc:
            # Nothing went out; the rest of the batch would fail the same way.
            error = GatewayError(f"cannot connect to APNs: {exc!r}", code="connect_failed",
                                 permanent=False)
            self._lost = self._lost or GatewayError(f"not attempted: {error.message}",
                                                    code=error.code, permanent=False)
            return SendResult(outbound.message_id, error=error), 0
        except (httpcore.TimeoutException, httpcore.NetworkError,
                httpcore.ProtocolError) as exc:
            return SendResult(outbound.message_id, error=GatewayError(
                f"no answer from APNs after the push was sent: {exc!r}", code="no_answer",
                permanent=False, in_doubt=True)), 0
        if response.status != 200:
            return SendResult(outbound.message_id, error=_reply_error(
                response.status, dict(response.headers), response.content)), response.status
        return SendResult(outbound.message_id, provider_id=message_apns_id,
                          cost=self.config.price_per_message), 200


async def _http2_handshake(host: str, port: int, context: ssl.SSLContext,
                           timeout: float) -> int:
    """Open TLS with ALPN h2, exchange the HTTP/2 preface and SETTINGS, close; returns the
    server's limit of concurrent streams."""
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout)
    try:
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            raise ConnectionError("the server did not agree to HTTP/2 (ALPN h2)")
        connection = h2.connection.H2Connection()
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        while True:
            data = await asyncio.wait_for(reader.read(65_535), timeout)
            if not data:
                raise ConnectionError("the server closed the connection before its SETTINGS")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    return connection.remote_settings.max_concurrent_streams
    finally:
        writer.close()
