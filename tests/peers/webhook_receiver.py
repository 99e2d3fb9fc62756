"""A webhook receiver on loopback, as a marketing platform's endpoint would be: it checks each
call's Standard Webhooks signature with the reference implementation (`standardwebhooks`)
against each secret it knows, and records the call.

`script` switches the answers: `answers` is a list of statuses answered in turn before the
default 200 (e.g. [500, 500]); `stall` holds each answer that many seconds (a slow receiver, or
a timeout when longer than the sender waits); `answer_gone` answers 410 to everything;
`answer_body` replaces the small JSON answer with this text; `fail_first_share` answers 500 to
the first call of that share of webhook-ids (chosen by the id's hash, so the same ids each run),
a receiver that fails now and then and recovers.

`python -m tests.peers.webhook_receiver --settings-out F` serves it from its own process for a
benchmark, which drives it over HTTP: `POST /_peer/secrets` `{"secret"}` adds a secret it
verifies with, `GET /_peer/stats` counts the calls (`received`, `verified`), `GET
/_peer/arrivals` gives the wall-clock time each verified webhook-id first arrived, and `POST
/_peer/reset` forgets both. That process keeps counts and arrival times only, not each call.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main


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

    def __init__(self, *, secrets: list[str] | None = None, keep_calls: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secrets: list[str] = list(secrets or [])
        self.keep_calls = keep_calls
        self.calls: list[ReceivedCall] = []
        self.counts = {"received": 0, "verified": 0}
        self.arrivals: dict[str, float] = {}
        # retry_after: the Retry-After header sent with a scripted 429 or 503
        self.script: dict[str, Any] = {"answers": [], "stall": 0.0, "answer_gone": False,
                                       "answer_body": None, "retry_after": None,
                                       "fail_first_share": 0.0}
        self._seen_ids: set[str] = set()

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
        app.router.add_post("/_peer/secrets", self._secret_add)
        app.router.add_get("/_peer/stats", self._stats)
        app.router.add_get("/_peer/arrivals", self._arrivals)
        app.router.add_post("/_peer/reset", self._reset)
        return app

    def _fails_first(self, webhook_id: str) -> bool:
        """Whether this is the first call of an id the script fails once (under the lock)."""
        share = self.script["fail_first_share"]
        if not share or not webhook_id or webhook_id in self._seen_ids:
            return False
        self._seen_ids.add(webhook_id)
        return zlib.crc32(webhook_id.encode()) % 1000 < share * 1000

    async def _secret_add(self, request: web.Request) -> web.Response:
        secret = (await request.json())["secret"]
        with self.lock:
            self.secrets.append(secret)
        return web.json_response({"secrets": len(self.secrets)})

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            return web.json_response(dict(self.counts))

    async def _arrivals(self, request: web.Request) -> web.Response:
        with self.lock:
            return web.json_response(dict(self.arrivals))

    async def _reset(self, request: web.Request) -> web.Response:
        with self.lock:
            self.counts = dict.fromkeys(self.counts, 0)
            self.arrivals.clear()
        return web.json_response({})

    async def receive(self, request: web.Request) -> web.Response:
        arrived = time.time()
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
            elif self._fails_first(headers.get("webhook-id", "")):
                status = 500
            else:
                status = 200 if call.verified_with else 401
            call.answered = status
            if self.keep_calls:
                self.calls.append(call)
            self.counts["received"] += 1
            if call.verified_with:
                self.counts["verified"] += 1
                self.arrivals.setdefault(headers.get("webhook-id", ""), arrived)
            stall = self.script["stall"]
            answer_body = self.script["answer_body"]
            retry_after = self.script["retry_after"] if status in (429, 503) else None
        if stall:
            await asyncio.sleep(stall)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if answer_body is not None:
            return web.Response(text=answer_body, status=status, headers=headers)
        return web.json_response({"status": status}, status=status, headers=headers)


if __name__ == "__main__":
    serve_main(lambda host, port: WebhookReceiverPeer(host=host, port=port, keep_calls=False),
                "A Standard Webhooks receiver on loopback, for benchmarks")
