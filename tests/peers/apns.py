"""A real Apple Push Notification service provider API on loopback: HTTP/2 over TLS (the `h2`
library on asyncio), with test certificates made at start, that records every push it accepts.

At start it makes a CA and a server certificate for 127.0.0.1 and localhost (EC P-256) and
writes the CA to a temporary file, which `gateway_settings()` hands the adapter as `ca_file`;
the server offers only `h2` by ALPN, as APNs does. It also makes the provider token signing key
(the .p8 a developer account hands out) with its key id and team id.

`POST /3/device/<token>` is checked as APNs checks it: the `authorization: bearer <JWT>` header
(ES256 signature by the public half of that key, `kid` the key id, `iss` the team id; `iat`
older than an hour is 403 ExpiredProviderToken, anything else wrong 403 InvalidProviderToken),
`apns-topic` (the peer's bundle id, else 400 TopicDisallowed), `apns-push-type`,
`apns-priority`, `apns-expiration` and `apns-id` (a UUID), the device token (64 hex digits,
else 400 BadDeviceToken) and the payload (over 4096 bytes: 413 PayloadTooLarge). An accepted
push is 200 with `apns-id` echoed (or made up, when the request had none). Errors carry
APNs's `{"reason": ...}` body.

`script` answers chosen device tokens with an error instead: `bad_token` (400 BadDeviceToken),
`other_app` (400 DeviceTokenNotForTopic), `unregistered` (410 Unregistered with the time the
token stopped being valid), `throttled` (429 TooManyRequests, with Retry-After when a number is
given), `unavailable` (503 ServiceUnavailable), `failing` (500 InternalServerError), `stalled`
(accepted and recorded, the reply held back `stall_seconds`) or `dropped` (accepted and
recorded, then the connection closed with no reply). `expire_provider_tokens()` makes
every JWT seen so far answer 403 ExpiredProviderToken, as if its hour had passed.

It counts TLS connections, requests, the distinct JWTs it saw and the most requests one
connection had waiting for their reply at once (streams in flight). `ApnsPeer().start()` serves
from a thread (tests); `python -m tests.peers.apns --settings-out F` serves from its own process
(benchmarks) with `GET /_peer/stats` on a plain-HTTP side port, named by the `stats_url` entry
of the settings it writes, and takes the bench's device tokens (`bench-push:` + 64 hex digits).

This peer is for behaviour, in the tests. Pure-Python HTTP/2 costs it about 0.4 ms of CPU per
request, a core at 2,300 requests/s, so beside the workers on a 2-core machine it would
measure itself, not the client: the bench's mailings go to apns_node.js (Node's nghttp2, 0.1
to 0.2 ms per push), which makes the same checks of the bench's pushes and scripts nothing;
`node_peer_command` writes its TLS files and provider key and gives its command line.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import secrets
import ssl
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

APNS_PAYLOAD_LIMIT = 4096
PROVIDER_TOKEN_LIFETIME = 3600
PUSH_TYPES = frozenset({"alert", "background", "location", "voip", "complication", "fileprovider",
                        "mdm", "liveactivity", "pushtotalk"})
TOKEN_FORMAT = re.compile(r"^[0-9a-fA-F]{64}$")
UUID_FORMAT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What the bench's devices are called (bench/push.py TOKEN_PREFIX); a process peer takes them
# when what follows is a well-formed token.
BENCH_TOKEN_PREFIX = "bench-push:"
_DROP = 0  # the status `answer` gives a push whose connection is to be closed unanswered


@dataclass(frozen=True)
class Pushed:
    token: str
    apns_id: str
    headers: dict[str, str]
    payload: dict[str, Any]

    @property
    def aps(self) -> dict[str, Any]:
        return self.payload.get("aps") or {}


@dataclass
class Scripted:
    """Device tokens the peer answers with an error instead of accepting the push."""

    bad_token: set[str] = field(default_factory=set)
    other_app: set[str] = field(default_factory=set)
    unregistered: set[str] = field(default_factory=set)
    throttled: dict[str, int | None] = field(default_factory=dict)  # token -> Retry-After
    unavailable: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0


@dataclass(frozen=True)
class TestCertificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def certificates_make() -> TestCertificates:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Engage test APNs CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return TestCertificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


class ApnsPeer(ThreadedAiohttpPeer):
    """The thread and process plumbing of ThreadedAiohttpPeer, serving HTTP/2 from `h2` in
    `serve()` instead of an aiohttp application (aiohttp speaks no HTTP/2); aiohttp serves
    only the stats side port of a process peer."""

    name = "apns"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, topic: str = "club.engage.app",
                 stats_side_port: bool = False, token_prefix: str = "") -> None:
        super().__init__(host=host, port=port)
        self.topic = topic
        self.team_id = secrets.token_hex(5).upper()
        self.key_id = secrets.token_hex(5).upper()
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self._public_key = self._signing_key.public_key()
        self.script = Scripted()
        self.token_prefix = token_prefix
        self._stats_side_port = stats_side_port
        self._stats_runner: web.AppRunner | None = None
        self._stats_port = 0
        self._dir = tempfile.TemporaryDirectory(prefix="engage-apns-peer-")
        self._certificates = certificates_make()
        self.ca_file = Path(self._dir.name) / "ca.pem"
        self.ca_file.write_bytes(self._certificates.ca_pem)
        self._server: asyncio.Server | None = None
        self._protocols: set[_Http2Connection] = set()
        self._verified: dict[str, int] = {}  # JWT -> its iat, once its signature checked out
        self._expired: set[str] = set()
        self._received: list[Pushed] = []
        self.requests = 0
        self.connections = 0
        self.pushing_connections = 0
        self.most_unanswered = 0  # requests on one connection waiting for their reply at once

    # --- what tests read and set -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def received(self) -> list[Pushed]:
        with self.lock:
            return list(self._received)

    @property
    def provider_tokens(self) -> int:
        """Distinct JWTs that passed the signature check."""
        with self.lock:
            return len(self._verified)

    def expire_provider_tokens(self) -> None:
        """Answer every JWT seen so far with 403 ExpiredProviderToken, as if its hour passed."""
        with self.lock:
            self._expired.update(self._verified)

    def private_key_pem(self) -> str:
        return self._signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        settings = {"team_id": self.team_id, "key_id": self.key_id,
                    "private_key": self.private_key_pem(), "topic": self.topic,
                    "endpoint": self.url, "ca_file": str(self.ca_file), "timeout": 5,
                    "connect_timeout": 2}
        if self._stats_side_port:
            settings["stats_url"] = f"http://{self.host}:{self._stats_port}"
        return {**settings, **overrides}

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"accepted": len(self._received), "requests": self.requests,
                    "connections": self.connections,
                    "pushing_connections": self.pushing_connections,
                    "provider_tokens": len(self._verified)}

    # --- serving ---------------------------------------------------------------------------

    async def serve(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert_file = Path(self._dir.name) / "server.pem"
        cert_file.write_bytes(self._certificates.cert_pem + self._certificates.key_pem)
        context.load_cert_chain(cert_file)
        context.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Http2Connection(self), self.host,
                                                self.port, ssl=context, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        if self._stats_side_port:
            app = web.Application()
            app.router.add_get("/_peer/stats", self._stats)
            self._stats_runner = web.AppRunner(app, access_log=None)
            await self._stats_runner.setup()
            site = web.TCPSite(self._stats_runner, self.host, 0)
            await site.start()
            self._stats_port = self._stats_runner.addresses[0][1]

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            for protocol in list(self._protocols):
                protocol.abort()
        if self._stats_runner is not None:
            await self._stats_runner.cleanup()

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    # --- answering -------------------------------------------------------------------------

    def answer(self, headers: Mapping[str, str], body: bytes,
               connection: _Http2Connection) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, body, seconds to hold the reply) for one request."""
        with self.lock:
            self.requests += 1
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        reply_headers = {"apns-id": apns_id}
        path = headers.get(":path", "")
        if headers.get(":method") != "POST":
            return _error(405, "MethodNotAllowed", reply_headers)
        if not path.startswith("/3/device/"):
            return _error(404, "BadPath", reply_headers)
        reason = self._provider_token_problem(headers.get("authorization", ""))
        if reason:
            return _error(403, reason, reply_headers)
        reason = self._header_problem(headers)
        if reason:
            return _error(400, reason, reply_headers)
        token = path.removeprefix("/3/device/")
        if not token:
            return _error(400, "MissingDeviceToken", reply_headers)
        if not self._well_formed(token) or token in self.script.bad_token:
            return _error(400, "BadDeviceToken", reply_headers)
        if len(body) > APNS_PAYLOAD_LIMIT:
            return _error(413, "PayloadTooLarge", reply_headers)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not payload:
            return _error(400, "PayloadEmpty", reply_headers)
        scripted = self._scripted(token, reply_headers)
        if scripted is not None:
            return scripted
        with self.lock:
            self._received.append(Pushed(token, apns_id, dict(headers), payload))
            if not connection.pushed:
                connection.pushed = True
                self.pushing_connections += 1
        if token in self.script.dropped:
            return _DROP, reply_headers, b"", 0.0
        hold = self.script.stall_seconds if token in self.script.stalled else 0.0
        return 200, reply_headers, b"", hold

    def _provider_token_problem(self, authorization: str) -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        with self.lock:
            issued = self._verified.get(token)
            expired = token in self._expired
        if issued is None:
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(token, self._public_key, algorithms=["ES256"],
                                    options={"require": ["iss", "iat"]})
            except jwt.PyJWTError:
                return "InvalidProviderToken"
            if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
                return "InvalidProviderToken"
            issued = int(claims["iat"])
            with self.lock:
                self._verified[token] = issued
        if expired or issued < time.time() - PROVIDER_TOKEN_LIFETIME:
            return "ExpiredProviderToken"
        return ""

    def _header_problem(self, headers: Mapping[str, str]) -> str:
        topic = headers.get("apns-topic")
        if not topic:
            return "MissingTopic"
        if topic != self.topic:
            return "TopicDisallowed"
        if headers.get("apns-push-type", "alert") not in PUSH_TYPES:
            return "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("1", "5", "10"):
            return "BadPriority"
        if not headers.get("apns-expiration", "0").isdigit():
            return "BadExpirationDate"
        if "apns-id" in headers and not UUID_FORMAT.match(headers["apns-id"]):
            return "BadMessageId"
        return ""

    def _well_formed(self, token: str) -> bool:
        if self.token_prefix:
            token = token.removeprefix(self.token_prefix)
        return TOKEN_FORMAT.match(token) is not None

    def _scripted(self, token: str, headers: dict[str, str]
                  ) -> tuple[int, dict[str, str], bytes, float] | None:
        script = self.script
        if token in script.other_app:
            return _error(400, "DeviceTokenNotForTopic", headers)
        if token in script.unregistered:
            # When APNs last learnt the token is no longer valid, in milliseconds.
            return _error(410, "Unregistered", headers,
                          timestamp=int(time.time() * 1000) - 86_400_000)
        if token in script.throttled:
            after = script.throttled[token]
            return _error(429, "TooManyRequests",
                          headers if after is None else {**headers, "retry-after": str(after)})
        if token in script.unavailable:
            return _error(503, "ServiceUnavailable", headers)
        if token in script.failing:
            return _error(500, "InternalServerError", headers)
        return None


def _error(status: int, reason: str, headers: dict[str, str], **extra: Any
           ) -> tuple[int, dict[str, str], bytes, float]:
    body = json.dumps({"reason": reason, **extra}).encode()
    return status, {**headers, "content-type": "application/json"}, body, 0.0


class _Http2Connection(asyncio.Protocol):
    """One client connection: h2's state machine fed from the socket, a reply per stream."""

    def __init__(self, peer: ApnsPeer) -> None:
        self.peer = peer
        self.pushed = False
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._unanswered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.peer._protocols.add(self)
        with self.peer.lock:
            self.peer.connections += 1
        # APNs lets a connection carry many streams at once; 1000 is what it advertises.
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer._protocols.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                if event.stream_id in self._streams:
                    self._streams[event.stream_id][1].extend(event.data)
                self._h2.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._request_ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._streams.pop(event.stream_id, None)
        self._flush()

    def _request_ended(self, stream_id: int) -> None:
        headers, body = self._streams.pop(stream_id, ({}, bytearray()))
        self._unanswered += 1
        with self.peer.lock:
            self.peer.most_unanswered = max(self.peer.most_unanswered, self._unanswered)
        status, reply_headers, reply_body, hold = self.peer.answer(headers, bytes(body), self)
        if status == _DROP:
            self.abort()
        elif hold:
            asyncio.get_running_loop().call_later(
                hold, self._reply, stream_id, status, reply_headers, reply_body)
        else:
            self._reply(stream_id, status, reply_headers, reply_body)

    def _reply(self, stream_id: int, status: int, headers: dict[str, str], body: bytes) -> None:
        self._unanswered -= 1
        if self._transport is None:
            return
        try:
            self._h2.send_headers(stream_id, [(":status", str(status)), *headers.items()],
                                  end_stream=not body)
            if body:
                self._h2.send_data(stream_id, body, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return  # the client gave up on the stream
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)


def node_peer_command(folder: Path, *, topic: str = "club.engage.app",
                      token_prefix: str = BENCH_TOKEN_PREFIX) -> list[str]:
    """The command line of the Node.js peer (apns_node.js, for throughput), its test
    certificates and a new provider key (with a key id and team id) written to `folder`."""
    certificates = certificates_make()
    provider_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    files = {"ca": ("ca.pem", certificates.ca_pem),
             "cert": ("server.pem", certificates.cert_pem),
             "key": ("server-key.pem", certificates.key_pem),
             "provider-key": ("provider.p8", provider_key)}
    arguments = ["node", str(Path(__file__).with_name("apns_node.js"))]
    for option, (name, content) in files.items():
        (folder / name).write_bytes(content)
        arguments += [f"--{option}", str(folder / name)]
    return [*arguments, "--key-id", secrets.token_hex(5).upper(),
            "--team-id", secrets.token_hex(5).upper(), "--topic", topic,
            "--token-prefix", token_prefix]


def main() -> None:
    serve_main(lambda host, port: ApnsPeer(host=host, port=port, stats_side_port=True,
                                           token_prefix=BENCH_TOKEN_PREFIX),
               __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
