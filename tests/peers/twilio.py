"""A Twilio Programmable Messaging API on loopback (aiohttp) that records every request, and
posts status callbacks signed the way Twilio signs them.

It speaks what the adapter meets in production:
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded To, From or
  MessagingServiceSid, Body, StatusCallback, with HTTP basic auth of the account SID and auth
  token (401 with code 20003 otherwise). Answers 201 with the message resource (`sid` SM...,
  `status` queued, `num_segments`), or Twilio's error JSON `{"code", "message", "more_info",
  "status"}`: 21211 for a To that is not E.164 or listed in `script.invalid`, the code a test
  gives a number in `script.refused` (21610, 21614, ...), 21602 without a Body, 21603 without a
  sender, 429 / 20429 with Retry-After for `script.throttled`, 503 / 20503 for
  `script.unavailable`; a number in `script.stalled` is accepted and recorded, and its answer
  held back past the client's timeout.
- Status callbacks: `callback_params` builds the fields Twilio posts, `signature` signs them
  (HMAC-SHA1 with the auth token over the URL and the sorted fields, base64: written here from
  Twilio's documentation, not with the `twilio` package the adapter checks it with), and
  `status_callback` posts them over real HTTP to the StatusCallback a message named.
- `GET /2010-04-01/Accounts/{AccountSid}.json`: the account (`status` is `account_status`),
  what the adapter's health probe fetches.
- `GET /_peer/stats`: counters, for a benchmark that runs the peer in another process.

`TwilioPeer().start()` serves from a thread (tests); `python -m tests.peers.twilio --settings-out
F` serves from its own process and writes the gateway settings to F once it listens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import re
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
BODY_LIMIT = 1600


@dataclass(frozen=True)
class SentSms:
    sid: str
    to: str
    from_: str
    messaging_service_sid: str
    body: str
    status_callback: str


@dataclass(frozen=True)
class Requested:
    """One send request as the peer answered it (`at` is `time.monotonic()` on arrival)."""

    to: str
    at: float
    status: int


@dataclass
class Scripted:
    invalid: set[str] = field(default_factory=set)          # -> 400 21211
    refused: dict[str, int] = field(default_factory=dict)   # number -> Twilio 400 code
    throttled: dict[str, int] = field(default_factory=dict)  # number -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)      # -> 503 20503
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0


_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


def twilio_signature(*, auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by each field's name and value,
    sorted by name."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, code: int, headers: dict[str, str] | None = None,
           **values: str) -> web.Response:
    message = _MESSAGES.get(code, f"Error {code}").format(**values)
    return web.json_response({"code": code, "message": message,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status=status, headers=headers)


class TwilioPeer(ThreadedAiohttpPeer):
    name = "twilio"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.script = Scripted()
        # What the account resource says: active, suspended or closed.
        self.account_status = "active"
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
        return {"account_sid": self.account_sid, "auth_token": self.auth_token,
                "base_url": self.url, "timeout": 5, "connect_timeout": 2, **overrides}

    def callback_params(self, sid: str, status: str, *, error_code: str | None = None
                        ) -> dict[str, str]:
        """The fields of a status callback for a message this peer accepted."""
        sms = next(s for s in self.received if s.sid == sid)
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01",
                  "From": sms.from_ or "+15005550006", "MessageSid": sid,
                  "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, "To": sms.to}
        if sms.messaging_service_sid:
            params["MessagingServiceSid"] = sms.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = error_code
        return params

    def signature(self, url: str, params: dict[str, str]) -> str:
        return twilio_signature(auth_token=self.auth_token, url=url, params=params)

    def status_callback(self, sid: str, status: str, *, error_code: str | None = None,
                        url: str | None = None) -> int:
        """Post a signed status callback over HTTP to the StatusCallback the message named (or
        `url`), as Twilio does; returns the HTTP status answered."""
        target = url or next(s for s in self.received if s.sid == sid).status_callback
        params = self.callback_params(sid, status, error_code=error_code)
        request = urllib.request.Request(
            target, data=urlencode(params).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "X-Twilio-Signature": self.signature(target, params),
                     "User-Agent": "TwilioProxy/1.1"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._send)
        app.router.add_get("/2010-04-01/Accounts/{account}.json", self._account)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    # --- handlers --------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            stats = {"accepted": len(self._received), "connections": len(self._connections)}
        return web.json_response(stats)

    async def _account(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return _error(401, 20003)
        return web.json_response({"sid": self.account_sid, "friendly_name": "Engage test",
                                  "status": self.account_status, "type": "Full"})

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return False
        return (scheme == "Basic" and username == self.account_sid
                and hmac.compare_digest(password, self.auth_token)
                and request.match_info["account"] == self.account_sid)

    async def _send(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        sender, service = str(form.get("From", "")), str(form.get("MessagingServiceSid", ""))
        response = (_error(401, 20003) if not self._authenticated(request)
                    else self._refusal(to, body, sender, service))
        if response is not None:
            with self.lock:
                self._requests.append(Requested(to, arrived, response.status))
            return response
        sid = f"SM{next(self._ids):032x}"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self.lock:
            self._requests.append(Requested(to, arrived, 201))
            self._received.append(SentSms(sid, to, sender, service, body,
                                          str(form.get("StatusCallback", ""))))
            if peer:
                self._connections.add(peer[:2])
        if to in self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        # Twilio counts GSM-7 parts of 153 characters and UCS-2 parts of 67.
        wide = any(ord(char) > 127 for char in body)
        single, part = (70, 67) if wide else (160, 153)
        segments = 1 if len(body) <= single else -(-len(body) // part)
        return web.json_response({
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": sender or None,
            "messaging_service_sid": service or None, "body": body,
            "status": "accepted" if service else "queued", "num_segments": str(segments),
            "direction": "outbound-api", "price": None, "price_unit": "USD",
            "error_code": None, "error_message": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }, status=201)

    def _refusal(self, to: str, body: str, sender: str, service: str) -> web.Response | None:
        script = self.script
        if not E164.match(to) or to in script.invalid:
            return _error(400, 21211, to=to)
        if not body:
            return _error(400, 21602)
        if len(body) > BODY_LIMIT:
            return _error(400, 21617)
        if not sender and not service:
            return _error(400, 21603)
        if to in script.refused:
            return _error(400, script.refused[to])
        if to in script.throttled:
            return _error(429, 20429, headers={"Retry-After": str(script.throttled[to])})
        if to in script.unavailable:
            return _error(503, 20503)
        return None


def main() -> None:
    # A benchmark's messages need no status callbacks posted back.
    serve_main(lambda host, port: TwilioPeer(host=host, port=port), __doc__.splitlines()[0],
               status_callback_url="")


if __name__ == "__main__":
    main()
