"""Twilio Segment's HTTP Tracking API on loopback (aiohttp): `POST /v1/track`, judged as
Segment judges it.

Segment answers 200 `{"success": true}` to nearly everything and sorts calls out afterwards:
so does this peer. A call is `accepted` when its basic-auth user (or the body's `writeKey`) is
a write key in `write_keys`, it names a `userId` or `anonymousId`, and has an `event`;
otherwise it is `dropped` (what the Segment debugger would not show), still answered 200. Only
a body that is not JSON, or is over 32 KB, is answered 400, as Segment does.

Scripted answers (429, 500...) come first: see tests/peers/event_platform.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from aiohttp import web

from tests.peers.event_platform import EventPlatformPeer

MAX_BODY = 32 * 1024


class SegmentPeer(EventPlatformPeer):
    name = "segment"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.write_keys = {secrets.token_hex(16)}
        self.accepted: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []

    @property
    def track_url(self) -> str:
        return f"{self.url}/v1/track"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/track", self.track)
        return app

    def _write_key(self, header: str, body: dict[str, Any]) -> str:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(encoded).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return str(body.get("writeKey", ""))

    async def track(self, request: web.Request) -> web.Response:
        call, scripted = await self.call_take(request)
        if scripted is not None:
            return scripted
        if len(call.body) > MAX_BODY:
            return self.answer(call, web.json_response(
                {"success": False, "message": "Request entity too large"}, status=400))
        try:
            body = json.loads(call.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return self.answer(call, web.json_response(
                {"success": False, "message": "Invalid JSON"}, status=400))
        good = (self._write_key(call.headers.get("authorization", ""), body) in self.write_keys
                and (body.get("userId") or body.get("anonymousId")) and body.get("event"))
        with self.lock:
            (self.accepted if good else self.dropped).append(body)
        return self.answer(call, web.json_response({"success": True}))
