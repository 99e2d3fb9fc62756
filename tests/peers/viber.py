"""A Viber partner's HTTP API on loopback (aiohttp), in the Viber REST API's shape.

- `POST /pa/send_message`: the `X-Viber-Auth-Token` checked (status 2 invalidAuthToken when
  wrong), the body checked as Viber does (status 3 badData / 4 missingData: no receiver, no
  sender name or one over 28 characters, a text message without text, a picture without media,
  a rich_media card without buttons or below min_api_version 2), then HTTP 200
  `{status: 0, status_message: "ok", message_token}` with a 64-bit token, the message recorded.
  Per receiver, a test scripts instead: `not_registered` (status 5), `not_subscribed` (6),
  `rate_limited` (status 12 tooManyRequests), `throttled` (HTTP 429 with Retry-After),
  `unavailable` (HTTP 503) or `stalled` (accepted and recorded, the answer held back).
- `POST /pa/get_account_info`: the account's details for the right token (the health probe).
- Callbacks: `callback(event, ...)` builds a signed callback body and its headers as Viber
  sends them (`X-Viber-Content-Signature`: hex HMAC-SHA256 of the body keyed with the auth
  token), for a test to post through Django's client; `post_callback(url, event, ...)` posts it
  over HTTP to a running server.
- `GET /_peer/stats`: counters (`accepted`, `requests`), for a benchmark that runs the peer in
  its own process (`python -m tests.peers.viber --settings-out F`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, callback_post, serve_main

FIRST_TOKEN = 5_741_311_803_571_721_087  # past 2**53: a float would lose it


@dataclass(frozen=True)
class ViberSent:
    receiver: str
    type: str
    text: str | None
    media: str | None
    rich_media: dict[str, Any] | None
    sender: dict[str, Any]
    tracking_data: str | None
    min_api_version: int | None
    message_token: int


@dataclass
class ViberScript:
    not_registered: set[str] = field(default_factory=set)
    not_subscribed: set[str] = field(default_factory=set)
    rate_limited: set[str] = field(default_factory=set)
    throttled: dict[str, int] = field(default_factory=dict)  # receiver -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0


def _status(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "status_message": message})


class ViberPeer(ThreadedAiohttpPeer):
    name = "viber"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.auth_token = f"4453b6ac1-{secrets.token_hex(8)}"
        self.account_name = "Engage Club"
        self.script = ViberScript()
        self._sent: list[ViberSent] = []
        self._answered: list[tuple[str, int]] = []  # (receiver, HTTP status) of each request
        self._tokens = itertools.count(FIRST_TOKEN)

    # --- what tests read and use -----------------------------------------------------------

    @property
    def sent(self) -> list[ViberSent]:
        with self.lock:
            return list(self._sent)

    @property
    def requests(self) -> list[tuple[str, int]]:
        with self.lock:
            return list(self._answered)

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"auth_token": self.auth_token, "base_url": self.url, "timeout": 5,
                "connect_timeout": 2, **overrides}

    def callback(self, event: str, *, message_token: int | None = None,
                 user_id: str | None = None, desc: str | None = None,
                 timestamp: int | None = None,
                 auth_token: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A callback's body and headers, signed with the auth token (or `auth_token`)."""
        payload: dict[str, Any] = {"event": event,
                                   "timestamp": timestamp or int(time.time() * 1000),
                                   "chat_hostname": "SN-CALLBACK-05_"}
        if message_token is not None:
            payload["message_token"] = message_token
        if user_id is not None:
            payload["user_id"] = user_id
        if desc is not None:
            payload["desc"] = desc
        body = json.dumps(payload).encode()
        key = (auth_token or self.auth_token).encode()
        signature = hmac.new(key, body, hashlib.sha256).hexdigest()
        return body, {"X-Viber-Content-Signature": signature}

    def post_callback(self, url: str, event: str, **fields: Any) -> tuple[int, bytes]:
        """Post a signed callback to `url` as Viber would; the HTTP status and body answered."""
        return callback_post(url, *self.callback(event, **fields))

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/pa/send_message", self._send_message)
        app.router.add_post("/pa/get_account_info", self._account_info)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        """What the peer accepted and answered, for a benchmark running it in its own process."""
        with self.lock:
            stats = {"accepted": len(self._sent), "requests": len(self._answered)}
        return web.json_response(stats)

    async def _account_info(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Viber-Auth-Token") != self.auth_token:
            return _status(2, "invalidAuthToken")
        return web.json_response({"status": 0, "status_message": "ok",
                                  "id": "pa:75346594275468546724", "name": self.account_name,
                                  "uri": "engageclub", "subscribers_count": 0})

    async def _send_message(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Viber-Auth-Token") != self.auth_token:
            return self._answer("", _status(2, "invalidAuthToken"))
        try:
            message = json.loads(await request.read())
        except ValueError:
            return self._answer("", _status(3, "badData"))
        if not isinstance(message, dict):
            return self._answer("", _status(3, "badData"))
        receiver = message.get("receiver")
        problem = self._problem(message)
        if problem is not None:
            return self._answer(str(receiver or ""), problem)
        scripted = self._scripted(receiver)
        if scripted is not None:
            return self._answer(receiver, scripted)
        token = next(self._tokens)
        with self.lock:
            self._sent.append(ViberSent(
                receiver=receiver, type=message["type"], text=message.get("text"),
                media=message.get("media"), rich_media=message.get("rich_media"),
                sender=message["sender"], tracking_data=message.get("tracking_data"),
                min_api_version=message.get("min_api_version"), message_token=token))
        if receiver in self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        # Written by hand: the token is a JSON number past 2**53, as Viber sends it.
        return self._answer(receiver, web.Response(
            text=f'{{"status":0,"status_message":"ok","message_token":{token},'
                 f'"chat_hostname":"SN-CHAT-05_","billing_status":1}}',
            content_type="application/json"))

    def _answer(self, receiver: str, response: web.Response) -> web.Response:
        with self.lock:
            self._answered.append((receiver, response.status))
        return response

    @staticmethod
    def _problem(message: dict[str, Any]) -> web.Response | None:
        sender = message.get("sender")
        if not message.get("receiver") or not message.get("type") or not isinstance(
                sender, dict) or not sender.get("name"):
            return _status(4, "missingData")
        if len(str(sender["name"])) > 28:
            return _status(3, "badData")
        kind = message["type"]
        if kind == "text" and not message.get("text"):
            return _status(4, "missingData")
        if kind == "text" and len(message["text"]) > 7000:
            return _status(3, "badData")
        if kind == "picture" and not message.get("media"):
            return _status(4, "missingData")
        if kind == "rich_media":
            card = message.get("rich_media")
            buttons = card.get("Buttons") if isinstance(card, dict) else None
            if not buttons or not all(isinstance(b, dict) and b.get("ActionType")
                                      for b in buttons):
                return _status(3, "badData")
            if (message.get("min_api_version") or 1) < 2:
                return _status(14, "incompatibleWithVersion")
        if kind not in ("text", "picture", "rich_media", "video", "file", "url", "location",
                        "contact", "sticker"):
            return _status(3, "badData")
        return None

    def _scripted(self, receiver: str) -> web.Response | None:
        script = self.script
        if receiver in script.not_registered:
            return _status(5, "receiverNotRegistered")
        if receiver in script.not_subscribed:
            return _status(6, "notSubscribed")
        if receiver in script.rate_limited:
            return _status(12, "tooManyRequests")
        if receiver in script.throttled:
            return web.json_response({"status": 12, "status_message": "tooManyRequests"},
                                     status=429,
                                     headers={"Retry-After": str(script.throttled[receiver])})
        if receiver in script.unavailable:
            return web.Response(status=503, text="Service Unavailable")
        return None


if __name__ == "__main__":
    serve_main(lambda host, port: ViberPeer(host=host, port=port), __doc__.splitlines()[0])
