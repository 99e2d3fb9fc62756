"""A webhook receiver on loopback, as a marketing platform's endpoint would be: it checks each
call's Standard Webhooks signature with the reference implementation (`standardwebhooks`)
against each secret it knows, and records the call.

`script` switches the answers: `answers` is a list of statuses answered in turn before the
default 200 (e.g. [500, 500]); `stall` holds each answer that many seconds (a slow receiver, or
a timeout when longer than the sender waits); `answer_gone` answers 410 to everything;
`answer_body` replaces the small JSON answer with this text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer


@dataclass
class ReceivedCall:
    headers: dict[str, str]
    body: bytes
    verified_with: list[str] = field(default_factory=list)
    answered: int = 200

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiverPeer(ThreadedAiohttpPeer):
    name = "webhook-receiver"

    def __init__(self, *, secrets: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secrets: list[str] = list(secrets or [])
        self.calls: list[ReceivedCall] = []
        self.script: dict[str, Any] = {"answers": [], "stall": 0.0, "answer_gone": False,
                                       "answer_body": None}

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"url": self.hook_url, **overrides}

    def verified_calls(self) -> list[ReceivedCall]:
        with self.lock:
            return [call for call in self.calls if call.verified_with]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        call = ReceivedCall(headers=headers, body=body)
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers, json_parse=False)
            except WebhookVerificationError:
                continue
            call.verified_with.append(secret)
        with self.lock:
            if self.script["answer_gone"]:
                status = 410
            elif self.script["answers"]:
                status = self.script["answers"].pop(0)
            else:
                status = 200 if call.verified_with else 401
            call.answered = status
            self.calls.append(call)
            stall = self.script["stall"]
            answer_body = self.script["answer_body"]
        if stall:
            await asyncio.sleep(stall)
        if answer_body is not None:
            return web.Response(text=answer_body, status=status)
        return web.json_response({"status": status}, status=status)
