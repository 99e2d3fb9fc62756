"""A regional SMS aggregator's HTTP API on loopback (aiohttp), the shape the generic HTTP SMS
adapter is configured for, recording every request.

`/api/send` takes `msisdn` (digits, no plus), `text`, optionally `from`, `ref` and any other
field, as JSON, a form, or a GET's query string, behind the auth the peer is started with
(`auth="bearer"` checks `Authorization: Bearer <token>`, "basic" the username and password,
"none" nothing; 401 `{"status": "error", "error_code": "AUTH_FAILED"}` otherwise). It answers as
many aggregators do, 200 for every business outcome:
- accepted: `{"status": "ok", "message_id": "hs-000001"}`;
- refused: `{"status": "error", "error_code": ..., "error_text": ...}`: INVALID_MSISDN for a
  number that is not digits or is listed in `script.invalid`, the code a test gives a number in
  `script.refused` (BLACKLISTED, ROUTE_BUSY, ...), MISSING_FIELD (HTTP 400) without msisdn or
  text;
- 429 THROTTLED with Retry-After for `script.throttled`, a plain-text 503 for
  `script.unavailable`, and for `script.stalled` an accepted message whose answer is held back
  past the client's timeout.

Delivery reports: `receipt_body` builds one (`{"message_id", "state", "err", "done_at"}`, states
DELIVRD, UNDELIV, EXPIRED, REJECTD, ENROUTE as SMSCs say them), `signature` signs a body (hex
HMAC-SHA256 with `receipt_secret`) and `post_receipt` posts it over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

RECEIPT_STATUSES = {"DELIVRD": "delivered", "UNDELIV": "undelivered", "EXPIRED": "expired",
                    "REJECTD": "rejected", "ENROUTE": ""}


@dataclass(frozen=True)
class SentSms:
    message_id: str
    msisdn: str
    text: str
    sender: str
    ref: str
    fields: dict[str, str]  # everything the request carried
    method: str
    content_type: str
    at: float = 0.0  # wall-clock time it was accepted, to compare with Engage's records


@dataclass(frozen=True)
class Requested:
    msisdn: str
    at: float
    status: int


@dataclass
class Scripted:
    invalid: set[str] = field(default_factory=set)          # msisdn -> INVALID_MSISDN
    refused: dict[str, str] = field(default_factory=dict)   # msisdn -> error code
    throttled: dict[str, int] = field(default_factory=dict)  # msisdn -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0
    bad_request: set[str] = field(default_factory=set)  # msisdn -> plain HTTP 400, no code
    reset: set[str] = field(default_factory=set)        # msisdn -> connection reset, no answer
    # msisdn -> one of "throttled", "unavailable", "reset", "stalled", "bad_request": that
    # fault on the number's first request only, answered normally after (a provider's blip).
    once: dict[str, str] = field(default_factory=dict)
    once_retry_after: int = 2


def _error(status: int, code: str, text: str,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"status": "error", "error_code": code, "error_text": text},
                             status=status, headers=headers)


class HttpSmsPeer(ThreadedAiohttpPeer):
    name = "http-sms"

    def __init__(self, *, auth: str = "bearer", host: str = "127.0.0.1", port: int = 0) -> None:
        assert auth in ("none", "basic", "bearer")
        self.auth = auth
        super().__init__(host=host, port=port)
        self.token = secrets.token_urlsafe(24)
        self.username, self.password = "engage", secrets.token_urlsafe(12)
        self.receipt_secret = secrets.token_hex(24)
        self.script = Scripted()
        self._received: list[SentSms] = []
        self._requests: list[Requested] = []
        self._connections: set[tuple[str, int]] = set()
        self._ids = itertools.count(1)

    # --- what tests read and set -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def received(self) -> list[SentSms]:
        with self.lock:
            return list(self._received)

    @property
    def requests(self) -> list[Requested]:
        with self.lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self._connections)

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        """The generic adapter's settings for this aggregator."""
        auth: dict[str, Any] = {"auth": self.auth}
        if self.auth == "bearer":
            auth["token"] = self.token
        elif self.auth == "basic":
            auth |= {"username": self.username, "password": self.password}
        return {
            "url": f"{self.url}/api/send", "method": "POST", "format": "json", **auth,
            "fields": {"phone": "msisdn", "text": "text", "sender": "from", "reference": "ref"},
            "extra_fields": {"route": "promo"}, "phone_format": "digits",
            "id_path": "message_id", "error_path": "error_code",
            "error_text_path": "error_text",
            "permanent_codes": ["INVALID_MSISDN", "BLACKLISTED", "MISSING_FIELD"],
            "inbound_secret": self.receipt_secret, "signature_header": "X-Signature",
            "receipt_id_field": "message_id", "receipt_status_field": "state",
            "receipt_code_field": "err", "receipt_time_field": "done_at",
            "receipt_statuses": dict(RECEIPT_STATUSES),
            "timeout": 5, "connect_timeout": 2, **overrides,
        }

    def receipt_body(self, message_id: str, state: str, *, err: str = "000",
                     done_at: str = "2026-12-06T10:00:00Z") -> bytes:
        return json.dumps({"message_id": message_id, "state": state, "err": err,
                           "done_at": done_at}).encode()

    def signature(self, body: bytes) -> str:
        return hmac.new(self.receipt_secret.encode(), body, hashlib.sha256).hexdigest()

    def post_receipt(self, url: str, body: bytes) -> tuple[int, bytes]:
        """Post a signed delivery report over HTTP; the status and body answered."""
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Signature": self.signature(body)})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/send", self._send)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    # --- handlers --------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            stats = {"accepted": len(self._received), "connections": len(self._connections)}
        return web.json_response(stats)

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "bearer":
            return hmac.compare_digest(header, f"Bearer {self.token}")
        if self.auth == "basic":
            scheme, _, encoded = header.partition(" ")
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return False
            return scheme == "Basic" and (username, password) == (self.username, self.password)
        return True

    @staticmethod
    async def _fields(request: web.Request) -> dict[str, str] | None:
        if request.method == "GET":
            return dict(request.query)
        if request.content_type == "application/json":
            try:
                data = json.loads(await request.read())
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            return {key: value if isinstance(value, str) else json.dumps(value)
                    for key, value in data.items()}
        return {key: str(value) for key, value in (await request.post()).items()}

    async def _send(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        fields = await self._fields(request)
        if fields is None:
            return _error(400, "BAD_REQUEST", "The body is not a JSON object")
        msisdn, text = fields.get("msisdn", ""), fields.get("text", "")
        with self.lock:
            fault = self.script.once.pop(msisdn, None)
        if fault == "reset" or msisdn in self.script.reset:
            with self.lock:
                self._requests.append(Requested(msisdn, arrived, 0))
            # Dropped without an answer, as a provider's load balancer resetting it does.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the aborted transport
        response = (_error(401, "AUTH_FAILED", "Invalid credentials")
                    if not self._authenticated(request) else self._refusal(msisdn, text, fault))
        if response is not None:
            with self.lock:
                self._requests.append(Requested(msisdn, arrived, response.status))
            return response
        message_id = f"hs-{next(self._ids):06d}"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self.lock:
            self._requests.append(Requested(msisdn, arrived, 200))
            self._received.append(SentSms(
                message_id, msisdn, text, fields.get("from", ""), fields.get("ref", ""), fields,
                request.method, request.content_type if request.method != "GET" else "",
                time.time()))
            if peer:
                self._connections.add(peer[:2])
        if msisdn in self.script.stalled or fault == "stalled":
            await asyncio.sleep(self.script.stall_seconds)
        return web.json_response({"status": "ok", "message_id": message_id})

    def _refusal(self, msisdn: str, text: str, fault: str | None = None) -> web.Response | None:
        script = self.script
        if not msisdn or not text:
            return _error(400, "MISSING_FIELD", "msisdn and text are required")
        if msisdn in script.bad_request or fault == "bad_request":
            return web.Response(status=400, text="Bad Request")
        if fault == "throttled":
            return _error(429, "THROTTLED", "Too many requests",
                          headers={"Retry-After": str(script.once_retry_after)})
        if fault == "unavailable":
            return web.Response(status=503, text="Service Unavailable",
                                headers={"Retry-After": str(script.once_retry_after)})
        if not msisdn.isdigit() or msisdn in script.invalid:
            return _error(200, "INVALID_MSISDN", f"Invalid destination number {msisdn}")
        if msisdn in script.refused:
            return _error(200, script.refused[msisdn], "Refused by the operator")
        if msisdn in script.throttled:
            return _error(429, "THROTTLED", "Too many requests",
                          headers={"Retry-After": str(script.throttled[msisdn])})
        if msisdn in script.unavailable:
            return web.Response(status=503, text="Service Unavailable")
        return None


def main() -> None:
    serve_main(lambda host, port: HttpSmsPeer(host=host, port=port), __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
