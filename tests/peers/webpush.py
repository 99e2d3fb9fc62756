"""A Web Push service and the browser behind it, on loopback (aiohttp): it hands out push
subscriptions, checks each push as a push service does (RFC 8030, VAPID per RFC 8292) and
decrypts it as the browser does (RFC 8291 aes128gcm), recording what the site's service worker
would read.

- `subscription(n)`: the JSON of a browser's `PushSubscription.toJSON()` for this push service,
  with its own P-256 key pair and auth secret, endpoint `<url>/push/<n>`. The peer plays the
  site too: it holds the VAPID key pair (`gateway_settings()`) whose public half the
  subscriptions were made with.
- `POST /push/{id}`: the `Authorization: vapid t=<JWT>, k=<key>` header checked: an ES256
  signature that `k` verifies, `aud` the push service's origin, `exp` in the future and at most
  24 h ahead, a `sub` that is a mailto: or https: URI (401 otherwise), and `k` the key the
  subscription was made with (403, as FCM answers, otherwise); a TTL header (400 without);
  `Content-Encoding: aes128gcm` and a body of at most 4096 bytes (413 above). Then the push is
  taken, with its TTL, Urgency and Topic headers, and 201 Created answered with a `Location`.
  As with a real push service, which cannot read a push, the push is decrypted by the browser
  (with the subscription's private key and auth secret) when it is delivered, not before the
  answer: here when a test reads `received`, which fails the test for a push the browser could
  not decrypt. Per subscription id a test scripts instead: `gone` (410), `not_found` (404),
  `throttled` (429 with Retry-After), `unavailable` (503) or `stalled` (taken, the answer held
  back); `refuse_jwts` refuses every JWT (401).
- `GET /_peer/stats`: counters, for a benchmark that runs the peer in its own process
  (`python -m tests.peers.webpush --settings-out F`), read after its clock stops: the browser
  first decrypts every push taken so far, and `decrypted` and `undecryptable` count them. That
  peer listens on BENCH_PORT and decrypts every subscription it does not know with
  BENCH_BROWSER's keys, so a bench can write subscriptions into its database before the peer
  starts (`bench_subscription_json`). Its browser is thus not on the sender's cores while a
  mailing is measured, as a member's browser is not.

`gateway_settings()` adds `peer_url`, which is no adapter setting (a web-push gateway sends to
whatever push service each subscription names, and ignores it): where the benchmark asks for
the peer's stats.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import struct
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

PAYLOAD_LIMIT = 4096  # RFC 8030 7.2: what every push service takes, and what this one takes
MAX_JWT_LIFETIME = 24 * 3600  # RFC 8292 section 2
# The benchmark's peer: a fixed port and one browser key pair, so the subscriptions a bench
# writes into its database before the peer starts still reach it and decrypt.
BENCH_PORT = 18443
BENCH_SUBJECT = "mailto:push@engage.example.com"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.X962,
                                   serialization.PublicFormat.UncompressedPoint)


@dataclass(frozen=True)
class Browser:
    """What a browser keeps for one subscription: its ECDH key pair and the auth secret."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def keys(self) -> dict[str, str]:
        return {"p256dh": _b64url(_point(self.private_key.public_key())),
                "auth": _b64url(self.auth)}

    def decrypt(self, body: bytes) -> bytes:
        """The plaintext of an aes128gcm push body (RFC 8188 records, keys derived as RFC
        8291 section 3.4 says); ValueError when it does not decrypt or is malformed.

        Written on cryptography's primitives, not http_ece: the benchmark's peer decrypts
        every push of a run, and http_ece's HKDF objects and key serialization cost a third
        more (0.135 against 0.1 ms a push). The browser's public point is kept (`_public`) for
        the same reason. The test of the adapter checks its bodies with http_ece too, so the
        two sides do not share one reading of the RFC.
        """
        if len(body) < 21:
            raise ValueError("shorter than an aes128gcm header")
        salt = body[:16]
        record_size, key_length = struct.unpack("!IB", body[16:21])
        sender_public = body[21:21 + key_length]
        records = body[21 + key_length:]
        if record_size < 18 or key_length != 65 or not records:
            raise ValueError("not an aes128gcm header with a P-256 key and records")
        shared = self.private_key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), sender_public))
        ikm = _hmac(_hmac(self.auth, shared),
                    b"WebPush: info\x00" + self._public + sender_public + b"\x01")
        prk = _hmac(salt, ikm)
        aesgcm = AESGCM(_hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16])
        nonce = int.from_bytes(_hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12], "big")
        pieces = [records[i:i + record_size] for i in range(0, len(records), record_size)]
        plaintext = []
        for seq, record in enumerate(pieces):
            try:
                padded = aesgcm.decrypt((nonce ^ seq).to_bytes(12, "big"), record, None)
            except InvalidTag as exc:
                raise ValueError(f"record {seq} does not decrypt") from exc
            content = padded.rstrip(b"\x00")
            delimiter = b"\x02" if seq == len(pieces) - 1 else b"\x01"
            if not content.endswith(delimiter):
                raise ValueError(f"record {seq} lacks its padding delimiter {delimiter!r}")
            plaintext.append(content[:-1])
        return b"".join(plaintext)

    @cached_property
    def _public(self) -> bytes:
        return _point(self.private_key.public_key())


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _bench_browser() -> Browser:
    seed = hashlib.sha256(b"engage bench web-push browser").digest()
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n
    secret = int.from_bytes(seed, "big") % (order - 1) + 1
    return Browser(ec.derive_private_key(secret, ec.SECP256R1()), seed[:16])


BENCH_BROWSER = _bench_browser()


def bench_subscription_json(subscription_id: str, *, host: str = "127.0.0.1") -> str:
    """A subscription the benchmark's peer (on BENCH_PORT) accepts and decrypts."""
    return json.dumps({"endpoint": f"http://{host}:{BENCH_PORT}/push/{subscription_id}",
                       "expirationTime": None, "keys": BENCH_BROWSER.keys})


@dataclass(frozen=True)
class WebPushed:
    """One push as the browser got it: the decrypted JSON and the headers it came with."""

    subscription_id: str
    payload: dict[str, Any]
    ttl: int
    urgency: str | None
    topic: str | None
    location: str
    claims: dict[str, Any]  # the VAPID JWT's


@dataclass(frozen=True)
class Taken:
    """One push as the push service took it, before the browser reads it."""

    subscription_id: str
    body: bytes
    ttl: int
    urgency: str | None
    topic: str | None
    location: str
    claims: dict[str, Any]


@dataclass
class WebPushScript:
    """Subscription ids the push service answers with an error instead of taking the push."""

    gone: set[str] = field(default_factory=set)
    not_found: set[str] = field(default_factory=set)
    throttled: dict[str, int] = field(default_factory=dict)  # id -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0
    # Every JWT refused (401), as a push service whose clock runs ahead refuses them.
    refuse_jwts: bool = False


class VapidRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebPushPeer(ThreadedAiohttpPeer):
    name = "webpush"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 default_browser: Browser | None = None) -> None:
        super().__init__(host=host, port=port)
        self.script = WebPushScript()
        self.vapid_key = ec.generate_private_key(ec.SECP256R1())
        self.application_server_key = _b64url(_point(self.vapid_key.public_key()))
        self._default_browser = default_browser
        self._browsers: dict[str, Browser] = {}
        self._taken: list[Taken] = []
        self._received: list[WebPushed] = []  # the taken pushes the browser has read so far
        self._undecryptable: list[str] = []
        self._requests: list[tuple[str, int]] = []
        self._jwts: set[str] = set()
        self._verified: dict[str, dict[str, Any]] = {}  # JWT -> claims, its signature checked
        self._ids = itertools.count(1)

    # --- what tests read and set -------------------------------------------------------------

    def subscription(self, n: int | str) -> str:
        """A new browser's subscription to this push service, as the app stores it."""
        browser = Browser.new()
        with self.lock:
            self._browsers[str(n)] = browser
        return json.dumps({"endpoint": f"{self.url}/push/{n}", "expirationTime": None,
                           "keys": browser.keys})

    @property
    def received(self) -> list[WebPushed]:
        """Every push taken, as the browser decrypted it; AssertionError when the browser could
        not decrypt one (the sender encrypted it wrong)."""
        with self.lock:
            self._deliver()
            if self._undecryptable:
                raise AssertionError("the browser could not decrypt: "
                                     + "; ".join(self._undecryptable))
            return list(self._received)

    def _deliver(self) -> None:
        """The browser reads the pushes taken since it last did (called with the lock held)."""
        for taken in self._taken[len(self._received) + len(self._undecryptable):]:
            browser = self._browsers.get(taken.subscription_id, self._default_browser)
            try:
                if browser is None:
                    raise ValueError("no browser holds this subscription")
                payload = json.loads(browser.decrypt(taken.body))
            except (ValueError, TypeError) as exc:
                self._undecryptable.append(f"push to {taken.subscription_id}: {exc!r}")
                continue
            self._received.append(WebPushed(
                taken.subscription_id, payload, taken.ttl, taken.urgency, taken.topic,
                taken.location, taken.claims))

    @property
    def requests(self) -> list[tuple[str, int]]:
        """(subscription id, status answered) for every push request, in arrival order."""
        with self.lock:
            return list(self._requests)

    @property
    def jwts(self) -> set[str]:
        """The distinct VAPID JWTs the peer was sent."""
        with self.lock:
            return set(self._jwts)

    def vapid_private_key_raw(self) -> str:
        """The site's VAPID private key as `web-push generate-vapid-keys` prints it."""
        return _b64url(self.vapid_key.private_numbers().private_value.to_bytes(32, "big"))

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"vapid_private_key": self.vapid_private_key_raw(),
                "vapid_subject": BENCH_SUBJECT, "timeout": 5, "connect_timeout": 2,
                "peer_url": self.url, **overrides}

    # --- serving -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{id}", self._push)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            self._deliver()
            stats = {"accepted": len(self._taken), "decrypted": len(self._received),
                     "undecryptable": len(self._undecryptable),
                     "requests": len(self._requests), "jwts": len(self._jwts)}
        return web.json_response(stats)

    async def _push(self, request: web.Request) -> web.Response:
        subscription_id = request.match_info["id"]
        body = await request.read()
        try:
            claims = self._vapid_claims(request.headers.get("Authorization", ""))
        except VapidRefused as refused:
            response = web.json_response({"code": refused.status, "message": refused.reason},
                                         status=refused.status)
        else:
            response = (self._refusal(request, subscription_id, body)
                        or await self._accept(request, subscription_id, body, claims))
        with self.lock:
            self._requests.append((subscription_id, response.status))
        return response

    def _refusal(self, request: web.Request, subscription_id: str,
                 body: bytes) -> web.Response | None:
        script = self.script
        if not request.headers.get("TTL", "").isdigit():
            return web.json_response({"code": 400, "message": "Missing TTL header"},
                                     status=400)
        if subscription_id in script.gone:
            return web.json_response({"code": 410, "errno": 106,
                                      "message": "Request did not validate expired subscription"},
                                     status=410)
        if subscription_id in script.not_found:
            return web.json_response({"code": 404, "errno": 102,
                                      "message": "Request did not validate invalid token"},
                                     status=404)
        if len(body) > PAYLOAD_LIMIT:
            return web.json_response({"code": 413, "errno": 104,
                                      "message": "This message is intended for a constrained "
                                                 "device and is limited in size."}, status=413)
        if subscription_id in script.throttled:
            return web.json_response(
                {"code": 429, "message": "Too many messages for this subscription"}, status=429,
                headers={"Retry-After": str(script.throttled[subscription_id])})
        if subscription_id in script.unavailable:
            return web.json_response({"code": 503, "message": "Service Unavailable"},
                                     status=503)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return web.json_response({"code": 400, "message": "Unsupported Content-Encoding"},
                                     status=400)
        return None

    async def _accept(self, request: web.Request, subscription_id: str, body: bytes,
                      claims: dict[str, Any]) -> web.Response:
        location = f"{self.url}/message/{next(self._ids)}"
        with self.lock:
            self._taken.append(Taken(
                subscription_id, body, int(request.headers["TTL"]),
                request.headers.get("Urgency"), request.headers.get("Topic"), location, claims))
        if subscription_id in self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        return web.Response(status=201, headers={"Location": location,
                                                 "TTL": request.headers["TTL"]})

    def _vapid_claims(self, authorization: str) -> dict[str, Any]:
        scheme, _, rest = authorization.partition(" ")
        params = dict(part.strip().partition("=")[::2] for part in rest.split(","))
        token, key = params.get("t", ""), params.get("k", "")
        if scheme.lower() != "vapid" or not token or not key:
            raise VapidRefused(401, "Authorization must be 'vapid t=<JWT>, k=<key>'")
        with self.lock:
            self._jwts.add(token)
            claims = self._verified.get(token)
        if claims is None:
            claims = self._jwt_verified(token, key)
        now = time.time()
        if self.script.refuse_jwts:
            raise VapidRefused(401, "the JWT has expired")
        if not isinstance(claims.get("exp"), int) or not now < claims["exp"]:
            raise VapidRefused(401, "the JWT has expired")
        if claims["exp"] > now + MAX_JWT_LIFETIME:
            raise VapidRefused(401, "the JWT's exp is more than 24 hours ahead")
        if claims.get("aud") != self.url:
            raise VapidRefused(401, f"the JWT's aud is not {self.url}")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise VapidRefused(401, "the JWT's sub must be a mailto: or https: URI")
        if key != self.application_server_key:
            raise VapidRefused(403, "the key in the authorization header does not correspond "
                                    "to the one the subscription was made with")
        return claims

    def _jwt_verified(self, token: str, key: str) -> dict[str, Any]:
        try:
            header_part, claims_part, signature_part = token.split(".")
            header = json.loads(_b64url_decode(header_part))
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), _b64url_decode(key))
            signature = _b64url_decode(signature_part)
            if header.get("alg") != "ES256" or len(signature) != 64:
                raise ValueError("not ES256")
            public_key.verify(
                encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                     int.from_bytes(signature[32:], "big")),
                f"{header_part}.{claims_part}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_b64url_decode(claims_part))
        except (ValueError, binascii.Error, InvalidSignature) as exc:
            raise VapidRefused(401, f"the JWT's signature does not verify: {exc!r}") from exc
        if not isinstance(claims, dict):
            raise VapidRefused(401, "the JWT's claims are not an object")
        with self.lock:
            self._verified[token] = claims
        return claims


def main() -> None:
    serve_main(lambda host, port: WebPushPeer(host=host, port=port or BENCH_PORT,
                                              default_browser=BENCH_BROWSER),
               __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
