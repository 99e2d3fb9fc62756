"""What the marketing-platform peers (Klaviyo, Mailchimp, Segment) share: every call recorded
as it came, and answers a test scripts ahead of the peer's own judgement.

`script["answers"]` is a list of statuses answered in turn (e.g. [429, 500]) before the peer
judges calls itself; `script["retry_after"]` goes with a scripted 429.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer


@dataclass
class PlatformCall:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class EventPlatformPeer(ThreadedAiohttpPeer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[PlatformCall] = []
        self.script: dict[str, Any] = {"answers": [], "retry_after": 1}

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"url": self.url, **overrides}

    async def call_take(self, request: web.Request) -> tuple[PlatformCall, web.Response | None]:
        """The call, recorded, and the scripted answer to give it, if one is due."""
        call = PlatformCall(path=request.path, body=await request.read(),
                            headers={k.lower(): v for k, v in request.headers.items()})
        with self.lock:
            self.calls.append(call)
            status = self.script["answers"].pop(0) if self.script["answers"] else None
            retry_after = self.script["retry_after"]
        if status is None:
            return call, None
        call.answered = status
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return call, web.json_response({"scripted": status}, status=status, headers=headers)

    def answer(self, call: PlatformCall, response: web.Response) -> web.Response:
        call.answered = response.status
        return response
