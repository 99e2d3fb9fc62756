"""A real Huawei Push Kit server (the HMS Core server API, v1) on loopback (aiohttp), with its
own OAuth 2.0 token endpoint, that records every push it accepts and builds the receipts Push Kit
would post about them.

It speaks what the adapter meets in production:
- `POST /oauth2/v3/token`: the client-credentials grant, its client id (the app id) and secret
  checked, answered with an access token and `expires_in`, or 400 with Huawei's error numbers.
  `script.refuse_grants` refuses even the right secret.
- `POST /v1/{appId}/messages:send`: the bearer token checked (401 with 80200001 when unknown,
  80200003 when expired: `expire_access_tokens()`), the app id of the path against the peer's
  (403, 80300002, as `script.forbidden` does for every request), then the body: a message with 1
  to 1000 tokens (80300010 past that), a notification and android part of the right types, the
  click action Push Kit requires, data as text (80100003 otherwise), at most 4096 bytes without
  the tokens (80300008). Tokens a test lists answer in Push Kit's ways: `invalid` (80300007 when
  every token of the request is, 80100000 listing them in `illegal_tokens` when some are),
  `throttled` (429 with Retry-After), `unavailable` (503, with `unavailable_retry_after` as
  Retry-After), `internal_error` (500, 81000001), `stalled` (accepted and recorded, the reply
  held back past the client's timeout); `recover_after` makes a throttled, unavailable or
  internal-error token accepted once it has been refused that many times. Otherwise 200
  `{"code": "80000000", "msg": "Success", "requestId": ...}`, one requestId per request.
- `GET /_peer/stats`: counters, for a benchmark that runs the peer in another process.

Receipts: `receipt_status(pushed, status)` is the status Push Kit reports about a push it took,
`receipt(statuses)` the body and X-HUAWEI-CALLBACK-ID header of a receipt call (signed with the
callback user name and key in the gateway settings, or others a test gives), and
`post_receipts(url, statuses)` posts one as Push Kit does.

`HmsPeer().start()` serves from a thread (tests); `python -m tests.peers.hms --settings-out F`
serves from its own process and writes the gateway settings to F once it listens (benchmarks).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, callback_post, serve_main

PAYLOAD_LIMIT = 4096
MAX_TOKENS = 1000
TOKEN_PATH = "/oauth2/v3/token"


@dataclass(frozen=True)
class Pushed:
    """One token's push as the peer accepted it."""

    token: str
    title: str | None
    body: str | None
    image: str | None
    click_action: dict[str, Any]
    data_text: str
    bi_tag: str | None
    request_id: str

    @property
    def data(self) -> Any:
        """The message's data, parsed when it is JSON text (read here, not on arrival: a
        benchmark's peer has no time to spare)."""
        try:
            return json.loads(self.data_text)
        except ValueError:
            return self.data_text


@dataclass
class Scripted:
    """Device tokens the peer answers with an error instead of accepting the push."""

    invalid: set[str] = field(default_factory=set)
    throttled: dict[str, int] = field(default_factory=dict)  # token -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)
    unavailable_retry_after: int | None = None
    internal_error: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0
    refuse_grants: bool = False
    # The app is not allowed to push (suspended in AppGallery Connect): 80300002 for every send.
    forbidden: bool = False
    recover_after: int | None = None


def _push_kit(code: str, msg: str, *, status: int = 200, request_id: str = "",
              headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "requestId": request_id},
                             status=status, headers=headers)


class HmsPeer(ThreadedAiohttpPeer):
    name = "hms"

    def __init__(self, *, app_id: str = "104000001", host: str = "127.0.0.1", port: int = 0,
                 access_token_lifetime: int = 3600) -> None:
        super().__init__(host=host, port=port)
        self.app_id = app_id
        self.client_secret = secrets.token_hex(32)
        self.callback_user = "engage-receipts"
        self.callback_key = secrets.token_urlsafe(24)
        self.access_token_lifetime = access_token_lifetime
        self.script = Scripted()
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._received: list[Pushed] = []
        self._requests = 0
        self._errors_answered: dict[str, int] = {}
        self._request_ids = itertools.count(1)
        self.token_grants = 0
        self.token_refusals = 0

    # --- what tests read and set -----------------------------------------------------------

    @property
    def token_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    @property
    def received(self) -> list[Pushed]:
        with self.lock:
            return list(self._received)

    @property
    def requests(self) -> int:
        """Send requests answered, accepted or not."""
        with self.lock:
            return self._requests

    def expire_access_tokens(self) -> None:
        """Let every access token issued so far expire, as if its hour had passed."""
        with self.lock:
            for token in self._access_tokens:
                self._access_tokens[token] = 0.0

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"app_id": self.app_id, "client_secret": self.client_secret,
                "endpoint": self.url, "token_url": self.token_url,
                "callback_user": self.callback_user, "inbound_secret": self.callback_key,
                "timeout": 5, "connect_timeout": 2, **overrides}

    # --- receipts --------------------------------------------------------------------------

    def receipt_status(self, pushed: Pushed, status: int = 0, *,
                       timestamp_ms: int | None = None) -> dict[str, Any]:
        """What Push Kit reports about a push it accepted (0: delivered)."""
        return {"biTag": pushed.bi_tag or "", "appid": self.app_id, "token": pushed.token,
                "status": status, "timestamp": timestamp_ms or int(time.time() * 1000),
                "requestId": pushed.request_id}

    def receipt(self, statuses: list[dict[str, Any]], *, callback_user: str | None = None,
                callback_key: str | None = None,
                timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """A receipt call's body and its X-HUAWEI-CALLBACK-ID header, whose `timestamp` is
        now in milliseconds unless given (older Push Kit versions sent seconds)."""
        body = json.dumps({"statuses": statuses}).encode()
        timestamp = str(timestamp or int(time.time() * 1000))
        nonce = str(uuid.uuid4())
        signed = f"{timestamp}{nonce}{callback_user or self.callback_user}".encode()
        value = base64.b64encode(hmac.new((callback_key or self.callback_key).encode(), signed,
                                          hashlib.sha256).digest()).decode()
        return body, {"X-HUAWEI-CALLBACK-ID":
                      f"timestamp={timestamp};nonce={nonce};value={value}"}

    def post_receipts(self, url: str, statuses: list[dict[str, Any]],
                      **signing: Any) -> tuple[int, bytes]:
        """Post a receipt call to `url` as Push Kit does; the HTTP status and body answered."""
        return callback_post(url, *self.receipt(statuses, **signing))

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_post("/v1/{app_id}/messages:send", self._send)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            stats = {"accepted": len(self._received), "requests": self._requests,
                     "token_grants": self.token_grants}
        return web.json_response(stats)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": 1102, "sub_error": 20003,
                                      "error_description": "unsupported grant type"},
                                     status=400)
        if (form.get("client_id") != self.app_id
                or form.get("client_secret") != self.client_secret or self.script.refuse_grants):
            with self.lock:
                self.token_refusals += 1
            return web.json_response({"error": 1101, "sub_error": 20152,
                                      "error_description": "invalid client_secret"},
                                     status=400)
        access_token = base64.b64encode(secrets.token_bytes(48)).decode()
        with self.lock:
            self._access_tokens[access_token] = time.monotonic() + self.access_token_lifetime
            self.token_grants += 1
        return web.json_response({"access_token": access_token,
                                  "expires_in": self.access_token_lifetime,
                                  "token_type": "Bearer"})

    def _auth_problem(self, authorization: str) -> web.Response | None:
        scheme, _, token = authorization.partition(" ")
        with self.lock:
            expiry = self._access_tokens.get(token)
        if scheme != "Bearer" or expiry is None:
            return _push_kit("80200001", "Oauth authentication error", status=401)
        if expiry <= time.monotonic():
            return _push_kit("80200003", "Oauth token expired", status=401)
        return None

    async def _send(self, request: web.Request) -> web.Response:
        request_id = f"{int(time.time() * 1000)}{next(self._request_ids):010d}"
        response = self._auth_problem(request.headers.get("Authorization", ""))
        if response is None and (request.match_info["app_id"] != self.app_id
                                 or self.script.forbidden):
            response = _push_kit("80300002", "APP is forbidden to send", status=403,
                                 request_id=request_id)
        message: dict[str, Any] = {}
        if response is None:
            message, response = self._message(await request.read(), request_id)
        if response is None:
            response = self._scripted_error(message["token"], request_id)
        if response is not None:
            with self.lock:
                self._requests += 1
            return response
        return await self._accept(message, request_id)

    @staticmethod
    def _message(raw: bytes, request_id: str) -> tuple[dict[str, Any], web.Response | None]:
        def bad(text: str) -> tuple[dict[str, Any], web.Response]:
            return {}, _push_kit("80100003", f"Illegal payload, {text}", status=400,
                                 request_id=request_id)

        try:
            body = json.loads(raw)
            message = body["message"]
        except (ValueError, KeyError, TypeError):
            return bad("the body is not a message")
        if not isinstance(message, dict) or not isinstance(body.get("validate_only", False),
                                                           bool):
            return bad("message must be an object")
        tokens = message.get("token")
        if (not isinstance(tokens, list) or not tokens
                or not all(isinstance(t, str) and t for t in tokens)):
            return bad("token must be a list of tokens")
        if len(tokens) > MAX_TOKENS:
            return {}, _push_kit("80300010", "The number of tokens exceeds the default value",
                                 status=400, request_id=request_id)
        notification = message.get("notification", {})
        android = message.get("android", {})
        if (not isinstance(notification, dict)
                or not all(isinstance(v, str) for v in notification.values())
                or not isinstance(android, dict) or not isinstance(message.get("data", ""), str)):
            return bad("notification, android or data has the wrong type")
        action = (android.get("notification") or {}).get("click_action")
        if notification and not (isinstance(action, dict) and (
                action.get("type") == 3 or (action.get("type") == 1 and action.get("intent"))
                or (action.get("type") == 2 and action.get("url")))):
            return bad("click_action is required for notification messages")
        # The body as sent, less its token list: a little over Push Kit's count of the
        # message alone, and no second serialization per request.
        if len(raw) - len(json.dumps(tokens)) > PAYLOAD_LIMIT:
            return {}, _push_kit("80300008", "The message body size exceeds the default value",
                                 status=400, request_id=request_id)
        return message, None

    def _scripted_error(self, tokens: list[str], request_id: str) -> web.Response | None:
        script = self.script
        for token in tokens:
            if token in script.throttled or token in script.unavailable \
                    or token in script.internal_error:
                with self.lock:
                    answered = self._errors_answered.get(token, 0)
                    if script.recover_after is not None and answered >= script.recover_after:
                        continue
                    self._errors_answered[token] = answered + 1
            if token in script.throttled:
                return web.Response(status=429, text="Too Many Requests",
                                    headers={"Retry-After": str(script.throttled[token])})
            if token in script.unavailable:
                headers = ({"Retry-After": str(script.unavailable_retry_after)}
                           if script.unavailable_retry_after is not None else None)
                return web.Response(status=503, text="Service Unavailable", headers=headers)
            if token in script.internal_error:
                return _push_kit("81000001", "System inner error", status=500,
                                 request_id=request_id)
        illegal = [token for token in tokens if token in script.invalid]
        if illegal and len(illegal) == len(tokens):
            detail = {"success": 0, "failure": len(illegal), "illegal_tokens": illegal}
            return _push_kit("80300007", json.dumps(detail), status=400, request_id=request_id)
        return None

    async def _accept(self, message: dict[str, Any], request_id: str) -> web.Response:
        tokens: list[str] = message["token"]
        illegal = [token for token in tokens if token in self.script.invalid]
        notification = message.get("notification") or {}
        android = message.get("android") or {}
        data = message.get("data", "")
        with self.lock:
            self._requests += 1
            self._received.extend(
                Pushed(token, notification.get("title"), notification.get("body"),
                       notification.get("image"),
                       (android.get("notification") or {}).get("click_action") or {},
                       data, android.get("bi_tag"), request_id)
                for token in tokens if token not in illegal)
        if any(token in self.script.stalled for token in tokens):
            await asyncio.sleep(self.script.stall_seconds)
        if illegal:
            detail = {"success": len(tokens) - len(illegal), "failure": len(illegal),
                      "illegal_tokens": illegal}
            return _push_kit("80100000", json.dumps(detail), request_id=request_id)
        return _push_kit("80000000", "Success", request_id=request_id)


def main() -> None:
    serve_main(lambda host, port: HmsPeer(host=host, port=port), __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
