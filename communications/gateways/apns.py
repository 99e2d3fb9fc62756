"""Push to Apple devices through the APNs provider API: HTTP/2 over TLS, token-based auth.

Each push is one `POST /3/device/<device token>` on a long-lived HTTP/2 connection, with the
headers `apns-topic` (the app's bundle id), `apns-push-type: alert`, `apns-priority`,
`apns-expiration` and `apns-id`, the UUID APNs echoes and reports by: Engage derives it from
its message id (the last 12 hex digits are the id), so an apns-id maps back to its message. A
batch goes out as `concurrency` streams in flight on one connection, as Apple asks providers to
do rather than opening many. The payload is `aps.alert` {title, body}, `mutable-content: 1`
when there is an image (the app's notification service extension fetches it), and push_data()
(link, image, template data, engage_message_id) at the top level.

The client is libcurl through pycurl: HTTP/2 by nghttp2 and TLS by OpenSSL, in C. One
CurlMulti per open multiplexes (CURLPIPE_MULTIPLEX) on at most one connection to the host
(MAX_HOST_CONNECTIONS 1), a push beyond the first waiting for it (PIPEWAIT) rather than
opening another; HTTP/2 is agreed by ALPN (CURL_HTTP_VERSION_2TLS). `concurrency` easy handles
are kept and reused push after push: a push costs a few setopt calls (URL, payload, header
lines, timeout), and its answer lands in two reused buffers. Every part of the connection is a
setting (the endpoint, the CA to trust, the timeouts), which tests need to reach the loopback
peer without patching.

Why libcurl: the transport before was httpcore on `h2`, pure Python, whose framing and HPACK
(the JWT huffman-coded on every request, since HPACK never indexes an authorization header)
cost over a millisecond of CPU per push. Measured with time.process_time, one batch of 2,000
pushes against the Node.js peer on loopback (tests/peers/apns_node.js), on the 2-core machine
with other work running: httpcore 1.2 to 1.6 ms per push at 64 streams (400 to 620 pushes/s),
pycurl 70 to 90 us (3,500 to 6,200 pushes/s); one stream at a time, pycurl 180 to 210 us
(1,600 to 2,150 pushes/s). aioapns, the APNs-specific alternative, has the production and
sandbox hosts written in, renews the token on its own schedule only, and silently resends a
push whose connection closed.

So does libcurl on its own: a request whose reused connection died before any answer goes
again on a fresh one (Curl_retry_request), which would push twice what Engage must report in
doubt. Each handle's PREREQFUNCTION, run when its request is about to go out on a connection,
lets it go once and aborts the second time (without it, the peer of
test_a_push_whose_connection_drops_unanswered_is_in_doubt_and_never_sent_twice got the push
twice). The price: a push on a stream APNs refused unprocessed (REFUSED_STREAM, past a GOAWAY),
which libcurl could resend safely, ends in doubt too. The health probe keeps a handshake of
its own on `h2` and Python's ssl: libcurl does not tell the server's limit of streams.

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
- No answer. What decides is whether the request reached the point of going out (the
  handle's PREREQFUNCTION ran: a connection was open or reused for it), not libcurl's error
  code, since one code can come from either side of it (CURLE_OPERATION_TIMEDOUT in the TLS
  handshake or waiting for the reply). Before it (CURLE_COULDNT_CONNECT, refused;
  CURLE_SSL_CONNECT_ERROR or CURLE_PEER_FAILED_VERIFICATION, the handshake or an untrusted
  certificate; a connect timeout; a push waiting for a connection that failed): transient
  `connect_failed`, and the rest of the batch not attempted (no result: back to the queue
  without spending an attempt). After it (a timeout waiting for
  the answer, CURLE_RECV_ERROR / CURLE_SEND_ERROR / CURLE_HTTP2 / CURLE_HTTP2_STREAM for a lost
  connection or a reset stream, CURLE_ABORTED_BY_CALLBACK for the resend stopped): `in_doubt`;
  APNs does not deduplicate on apns-id, so a resend could push twice. `timeout` counts from
  the push handed to libcurl; a push handed over before the connection first answered (it
  waits for the connection to open) gets connect_timeout more.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import h2.connection
import h2.events
import h2.exceptions
import jwt
import pycurl
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
)
from communications.gateways.http_sms import transport_settings_errors
from config.retry_after import retry_after_seconds

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
# libcurl adds `accept: */*` and a form content type to a POST; APNs wants neither.
_CURL_DEFAULTS_OFF = ("accept:", "content-type: application/json")


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


def _header_lines(raw: bytes) -> dict[str, str]:
    """The response's header fields by lower-case name (libcurl hands over the status line and
    the fields as HTTP/1 text, whatever the version on the wire)."""
    fields: dict[str, str] = {}
    for line in raw.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    return fields


def _reply_error(status: int, headers: Mapping[str, str], raw: bytes) -> GatewayError:
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
        after = retry_after_seconds(headers.get("retry-after", ""))
        return GatewayError(text, code=reason, permanent=False,
                            retry_after=THROTTLE_RETRY_AFTER if after is None and status == 429
                            else after)
    return GatewayError(text, code=reason, permanent=True)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    """The TLS context of the health probe, trusting `ca_file`, made once per process: loading
    a bundle costs tens of milliseconds."""
    return ssl.create_default_context(cafile=ca_file)


@dataclass(frozen=True)
class _ProviderToken:
    fingerprint: str
    jwt: str
    issued_at: float  # time.time()


# One per gateway id for the life of the process, shared by every batch a worker sends.
_PROVIDER_TOKENS: dict[int, _ProviderToken] = {}
_PROVIDER_TOKENS_LOCK = threading.Lock()


class _Stream:
    """One easy handle and the push it carries; reused push after push, so the per-push cost
    is a few setopt calls rather than a handle and its callbacks set up anew."""

    def __init__(self) -> None:
        self.curl = pycurl.Curl()
        self.headers = io.BytesIO()
        self.body = io.BytesIO()
        self.index = 0
        self.outbound: OutboundMessage | None = None
        self.payload = b""
        self.token = ""
        self.issued = 0  # times libcurl was about to send the request
        self.curl.setopt(pycurl.WRITEHEADER, self.headers)
        self.curl.setopt(pycurl.WRITEDATA, self.body)
        self.curl.setopt(pycurl.PREREQFUNCTION, self._prereq)

    def _prereq(self, *_addresses: object) -> int:
        # Called once the request has a connection and before it goes out. libcurl sends a
        # request again, on a fresh connection, when the reused one died before any answer;
        # APNs may have taken the first one and does not deduplicate: stop the second.
        self.issued += 1
        return pycurl.PREREQFUNC_OK if self.issued == 1 else pycurl.PREREQFUNC_ABORT


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

    def _ca_file(self) -> str:
        return str(self.config.settings.get("ca_file") or certifi.where())

    def open(self) -> None:
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        s = self.config.settings
        self._concurrency = int(s.get("concurrency", DEFAULT_CONCURRENCY))
        self._base = str(s.get("endpoint") or APNS_ENDPOINT).rstrip("/") + "/3/device/"
        ttl = int(s.get("time_to_live", DEFAULT_TIME_TO_LIVE))
        self._headers = [f"apns-topic: {s['topic']}", "apns-push-type: alert",
                         f"apns-priority: {s.get('priority', DEFAULT_PRIORITY)}",
                         f"apns-expiration: {int(time.time()) + ttl if ttl else 0}",
                         *_CURL_DEFAULTS_OFF]
        self._timeout_ms = round(float(s.get("timeout", DEFAULT_TIMEOUT)) * 1000)
        self._connect_timeout_ms = round(
            float(s.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)) * 1000)
        self._token = self._provider_token()
        self._renewed = False
        self._lost: GatewayError | None = None
        self._unreachable = False  # APNs could not be connected to: the rest is not attempted
        self._connected = False
        self._reconnect = False  # the next push opens a new connection (see _start)
        # One connection, its streams carrying the batch; a push beyond the streams in flight
        # waits for one to end rather than opening another connection (PIPEWAIT).
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, 1)
        self._multi.setopt(pycurl.M_MAX_CONCURRENT_STREAMS, self._concurrency)
        self._idle: list[_Stream] = []
        self._streams: list[_Stream] = []
        self._by_curl: dict[int, _Stream] = {}

    def close(self) -> None:
        multi = getattr(self, "_multi", None)
        if multi is None:
            return
        for stream in self._streams:
            stream.curl.close()
        multi.close()
        self._multi = None
        self._streams = []
        self._idle = []

    def _stream(self) -> _Stream:
        if self._idle:
            return self._idle.pop()
        stream = _Stream()
        curl = stream.curl
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        curl.setopt(pycurl.PIPEWAIT, 1)
        curl.setopt(pycurl.CAINFO, self._ca_file())
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_timeout_ms)
        curl.setopt(pycurl.NOSIGNAL, 1)
        self._streams.append(stream)
        self._by_curl[id(curl)] = stream
        return stream

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(batch)
        waiting = deque(range(len(batch)))
        in_flight = 0
        while waiting or in_flight:
            while waiting and in_flight < self._concurrency:
                index = waiting.popleft()
                outbound = batch[index]
                if self._unreachable:
                    continue  # no result: back to the queue, no attempt spent
                if self._lost is not None:
                    results[index] = SendResult(outbound.message_id, error=self._lost)
                elif not _DEVICE_TOKEN.match(outbound.address):
                    results[index] = SendResult(outbound.message_id, error=GatewayError(
                        f"{outbound.address[:80]!r} is not an APNs device token (hex digits)",
                        code="BadDeviceToken", permanent=True))
                else:
                    self._start(self._stream(), index, outbound, _payload(outbound))
                    in_flight += 1
            for stream, code, text in self._finished() if in_flight else ():
                in_flight -= 1
                result = self._result(stream, code, text)
                if result is None:  # sent again with the renewed provider token
                    in_flight += 1
                    continue
                results[stream.index] = result
                stream.outbound = None
                self._idle.append(stream)
        return [result for result in results if result is not None]

    def _start(self, stream: _Stream, index: int, outbound: OutboundMessage,
               payload: bytes) -> None:
        stream.index, stream.outbound, stream.payload = index, outbound, payload
        stream.token, stream.issued = self._token, 0
        stream.headers.seek(0)
        stream.headers.truncate()
        stream.body.seek(0)
        stream.body.truncate()
        curl = stream.curl
        # The first push after a connection was lost under pushes opens a new one: libcurl
        # may not have closed the dead one yet, and a push sent on it would be stopped from
        # going again (the PREREQFUNCTION) and end in doubt without having reached APNs.
        curl.setopt(pycurl.FRESH_CONNECT, 1 if self._reconnect else 0)
        self._reconnect = False
        curl.setopt(pycurl.URL, self._base + outbound.address)
        curl.setopt(pycurl.POSTFIELDS, payload)
        curl.setopt(pycurl.HTTPHEADER, [*self._headers,
                                        f"apns-id: {apns_id(outbound.message_id)}",
                                        f"authorization: bearer {self._token}"])
        # Counted from here: a push that first waits for the connection to open gets the
        # connect timeout more.
        curl.setopt(pycurl.TIMEOUT_MS, self._timeout_ms if self._connected
                    else self._timeout_ms + self._connect_timeout_ms)
        self._multi.add_handle(curl)

    def _finished(self) -> list[tuple[_Stream, int, str]]:
        """Drive the connection until at least one stream ended; (stream, libcurl's error code
        or 0, its text) of each that did."""
        multi = self._multi
        by_curl = self._by_curl
        while True:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            ended: list[tuple[_Stream, int, str]] = []
            queued = 1
            while queued:
                queued, ok, failed = multi.info_read()
                ended += [(by_curl[id(curl)], 0, "") for curl in ok]
                ended += [(by_curl[id(curl)], code, text) for curl, code, text in failed]
            if ended:
                for stream, _code, _text in ended:
                    multi.remove_handle(stream.curl)
                return ended
            wait = multi.timeout()
            multi.select(1.0 if wait < 0 else min(wait / 1000, 1.0))

    def _result(self, stream: _Stream, code: int, text: str) -> SendResult | None:
        """The push's result, or None when it went out again with a renewed token."""
        outbound = stream.outbound
        assert outbound is not None
        if code:
            return SendResult(outbound.message_id, error=self._transfer_error(stream, code, text))
        self._connected = True
        status = stream.curl.getinfo(pycurl.RESPONSE_CODE)
        if status == 200:
            return SendResult(outbound.message_id, provider_id=apns_id(outbound.message_id),
                              cost=self.config.price_per_message)
        error = _reply_error(status, _header_lines(stream.headers.getvalue()),
                             stream.body.getvalue())
        if status == 403 and error.code == "ExpiredProviderToken":
            if stream.token == self._token and not self._renewed:
                self._renewed = True
                self._token = self._provider_token(rejected=stream.token)
            if stream.token != self._token:
                self._start(stream, stream.index, outbound, stream.payload)
                return None
        if self._lost is None and (status == 403 or error.code in _HALTING_REASONS):
            self._lost = GatewayError(f"not attempted: {error.message}", code=error.code,
                                      permanent=False, retry_after=error.retry_after)
        return SendResult(outbound.message_id, error=error)

    def _transfer_error(self, stream: _Stream, code: int, text: str) -> GatewayError:
        """A push that got no answer: never sent when libcurl had no connection to send it on
        (it never reached the point of sending), in doubt once it had."""
        if stream.issued == 0:
            # Refused, TLS failed, connect timed out: the rest of the batch would fare alike.
            self._unreachable = True
            return GatewayError(f"cannot connect to APNs: {text} (libcurl error {code})",
                                code="connect_failed", permanent=False)
        self._reconnect = True
        if code == pycurl.E_ABORTED_BY_CALLBACK:
            text = "the connection was lost after the push went out, and libcurl would resend it"
        return GatewayError(f"no answer from APNs after the push was sent: {text} "
                            f"(libcurl error {code})", code="no_answer", permanent=False,
                            in_doubt=True)

    def health(self) -> tuple[bool, str]:
        """The TLS handshake with the endpoint (its certificate verified), HTTP/2 agreed by
        ALPN and the server's SETTINGS received, and a provider token signed with the key.
        Whether Apple accepts the key id and team id shows only with a push: APNs has no
        request that checks a token without sending one. (A handshake of its own on `h2`:
        libcurl does not tell the server's limit of streams.)"""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        s = self.config.settings
        self._provider_token()
        parts = urlsplit(str(s.get("endpoint") or APNS_ENDPOINT))
        host, port = parts.hostname or "", parts.port or 443
        try:
            streams = asyncio.run(_http2_handshake(
                host, port, _ssl_context(self._ca_file()),
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
