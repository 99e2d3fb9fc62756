"""A Postmark API server on loopback (aiohttp) that records every email it accepts, and sends
Postmark's tracking webhooks back.

It speaks what django-anymail's Postmark backend meets in production:
- `POST /email` (one message) and `POST /email/batch` (a JSON array of up to 500 distinct
  messages, each with its own To, Subject, bodies, Headers and Metadata): the
  `X-Postmark-Server-Token` header checked (401 ErrorCode 10 when wrong), a body that is not
  JSON refused (422 ErrorCode 402), a batch of more than 500 refused whole (422 ErrorCode 410,
  "too many batch messages"); then per message `{"To", "SubmittedAt", "MessageID",
  "ErrorCode": 0, "Message": "OK"}`, or Postmark's refusals: no To (ErrorCode 300, "Zero
  recipients specified") and the addresses a test lists in `script.invalid` (ErrorCode 300,
  "Invalid 'To' address") and `script.inactive` (ErrorCode 406, inactive recipient). A single
  `/email` answers those with HTTP 422; a batch answers HTTP 200 with an array of one entry per
  message in the order sent, a refused message's entry holding only its ErrorCode and Message,
  and the others accepted, as Postmark does.
- `script.throttled` (429, Retry-After `script.throttle_retry_after` when set),
  `script.failing` (500) and `script.stalled` (accepted and recorded, the reply held back
  `script.stall_seconds`, past the client's timeout), each for the listed addresses: a batch
  holding one of them is answered so as a whole (429 and 500 accept none of it);
  `script.slow` accepted and answered after `script.slow_seconds`, within the client's timeout
  (calls on their way side by side); `script.garbled` accepted and recorded, answered 200 with
  a body that is not Postmark's JSON (a proxy's page). `max_in_flight`: the most send requests
  (`/email`, `/email/batch`, Mailgun's messages) it held at once; `batch_sizes`: the number of
  messages of each `/email/batch` call, in the order they came.
- `POST /v3/{domain}/messages`: Mailgun's send API on the same server (basic auth "api" and
  `mailgun_api_key`, a form with `v:` variables and `h:` headers; 400 for `script.invalid`), so
  the adapter is shown speaking to a second ESP through the same code.
- `GET /server` (Postmark) and `GET /v3/domains/{domain}` (Mailgun): what the gateway's health
  probe asks, answered 401 for a wrong token or key.
- `post_event(url, kind, sent, auth=...)` POSTs a Postmark webhook payload (Delivery, Bounce,
  Open, Click, SpamComplaint, SubscriptionChange) about an accepted email to a tracking
  endpoint, with HTTP basic auth, as Postmark does.
- `GET /_peer/stats`: counters (`accepted` emails, `requests`, `connections`), for a benchmark
  that runs the peer in its own process (`python -m tests.peers.postmark --settings-out F`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

BATCH_LIMIT = 500
Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class Sent:
    """One email as Postmark accepted it."""

    to: str
    sender: str
    subject: str
    text_body: str
    html_body: str
    headers: dict[str, str]
    metadata: dict[str, str]
    tag: str
    message_id: str
    endpoint: str  # "/email" or "/email/batch"


@dataclass
class Scripted:
    invalid: set[str] = field(default_factory=set)
    inactive: set[str] = field(default_factory=set)
    throttled: set[str] = field(default_factory=set)
    throttle_retry_after: int | None = None
    failing: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0
    slow: set[str] = field(default_factory=set)
    slow_seconds: float = 0.3
    garbled: set[str] = field(default_factory=set)


def _error(status: int, code: int, message: str,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"ErrorCode": code, "Message": message}, status=status,
                             headers=headers)


def _garbled() -> web.Response:
    return web.Response(status=200, text="<html><body>upstream sent no reply</body></html>",
                        content_type="text/html")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class PostmarkPeer(ThreadedAiohttpPeer):
    name = "postmark"

    def __init__(self, *, server_token: str = "peer-server-token", host: str = "127.0.0.1",
                 port: int = 0, mailgun_api_key: str = "peer-mailgun-key") -> None:
        self.server_token = server_token
        self.mailgun_api_key = mailgun_api_key
        super().__init__(host=host, port=port)
        self.script = Scripted()
        self._sent: list[Sent] = []
        self._requests = 0
        self._connections: set[tuple[str, int]] = set()
        self._in_flight = 0
        self._max_in_flight = 0
        self._batch_sizes: list[int] = []
        self._event_ids = itertools.count(1)

    # --- what tests read -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def sent(self) -> list[Sent]:
        with self.lock:
            return list(self._sent)

    @property
    def requests(self) -> int:
        with self.lock:
            return self._requests

    @property
    def connections(self) -> int:
        """Distinct client connections that sent a request (keep-alive reuse shows here)."""
        with self.lock:
            return len(self._connections)

    @property
    def max_in_flight(self) -> int:
        """The most send requests the peer was answering at the same time."""
        with self.lock:
            return self._max_in_flight

    @property
    def batch_sizes(self) -> list[int]:
        """How many messages each `POST /email/batch` carried, in the order they came."""
        with self.lock:
            return list(self._batch_sizes)

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"esp": "postmark", "server_token": self.server_token, "api_url": self.url,
                "timeout": 2, "connect_timeout": 2, **overrides}

    def mailgun_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"esp": "mailgun", "api_key": self.mailgun_api_key, "api_url": f"{self.url}v3",
                "sender_domain": "mg.engage.example.com", "timeout": 2, "connect_timeout": 2,
                **overrides}

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/email", self._in_flight_counted(self._email))
        app.router.add_post("/email/batch", self._in_flight_counted(self._batch))
        app.router.add_post("/v3/{domain}/messages", self._in_flight_counted(self._mailgun))
        app.router.add_get("/server", self._server)
        app.router.add_get("/v3/domains/{domain}", self._mailgun_domain)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        """What the peer accepted, for a benchmark running it in its own process."""
        with self.lock:
            stats = {"accepted": len(self._sent), "requests": self._requests,
                     "connections": len(self._connections)}
        return web.json_response(stats)

    # --- the API ---------------------------------------------------------------------------

    def _counted(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self.lock:
            self._requests += 1
            if peer:
                self._connections.add(peer[:2])

    async def _read(self, request: web.Request) -> tuple[Any, web.Response | None]:
        self._counted(request)
        if request.headers.get("X-Postmark-Server-Token") != self.server_token:
            return None, _error(401, 10, "Request does not contain a valid Server token.")
        try:
            return json.loads(await request.read()), None
        except ValueError:
            return None, _error(422, 402, "Received invalid JSON input.")

    def _http_failure(self, addresses: list[str]) -> web.Response | None:
        script = self.script
        if any(a in script.throttled for a in addresses):
            headers = ({"Retry-After": str(script.throttle_retry_after)}
                       if script.throttle_retry_after is not None else None)
            return _error(429, 429, "Rate limit exceeded.", headers)
        if any(a in script.failing for a in addresses):
            return _error(500, 500, "Internal server error.")
        return None

    def _answer(self, message: Any, endpoint: str,
                submitted_at: str = "") -> tuple[dict[str, Any], bool]:
        """Postmark's entry for one message, and whether it was accepted."""
        if not isinstance(message, dict) or not message.get("To"):
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}, False
        to = str(message["To"])
        address = _addr_spec(to)
        if address in self.script.invalid:
            return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}, False
        if address in self.script.inactive:
            return {"ErrorCode": 406, "Message": (
                "You tried to send to recipient(s) that have been marked as inactive. Found "
                f"inactive addresses: {address}. Inactive recipients are ones that have "
                "generated a hard bounce, a spam complaint, or a manual suppression.")}, False
        message_id = str(uuid.uuid4())
        headers = {str(h.get("Name")): str(h.get("Value"))
                   for h in message.get("Headers") or [] if isinstance(h, dict)}
        with self.lock:
            self._sent.append(Sent(
                to=to, sender=str(message.get("From", "")),
                subject=str(message.get("Subject", "")),
                text_body=str(message.get("TextBody", "")),
                html_body=str(message.get("HtmlBody", "")), headers=headers,
                metadata=dict(message.get("Metadata") or {}), tag=str(message.get("Tag", "")),
                message_id=message_id, endpoint=endpoint))
        return {"To": to, "SubmittedAt": submitted_at or _now(), "MessageID": message_id,
                "ErrorCode": 0, "Message": "OK"}, True

    def _in_flight_counted(self, handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.Response:
            with self.lock:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                return await handler(request)
            finally:
                with self.lock:
                    self._in_flight -= 1

        return counted

    async def _email(self, request: web.Request) -> web.Response:
        message, refused = await self._read(request)
        if refused is not None:
            return refused
        address = _addr_spec(str(message.get("To", ""))) if isinstance(message, dict) else ""
        failure = self._http_failure([address])
        if failure is not None:
            return failure
        answer, accepted = self._answer(message, "/email")
        if accepted and address in self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        if accepted and address in self.script.slow:
            await asyncio.sleep(self.script.slow_seconds)
        if accepted and address in self.script.garbled:
            return _garbled()
        return web.json_response(answer, status=200 if accepted else 422)

    async def _batch(self, request: web.Request) -> web.Response:
        messages, refused = await self._read(request)
        if refused is not None:
            return refused
        if not isinstance(messages, list):
            return _error(422, 403, "The batch must be a JSON array of messages.")
        if len(messages) > BATCH_LIMIT:
            return _error(422, 410, f"Too many batch messages: {len(messages)}, the limit is "
                                    f"{BATCH_LIMIT}.")
        with self.lock:
            self._batch_sizes.append(len(messages))
        addresses = {_addr_spec(str(m.get("To", ""))) for m in messages if isinstance(m, dict)}
        failure = self._http_failure(list(addresses))
        if failure is not None:
            return failure
        submitted_at = _now()
        answers = [self._answer(message, "/email/batch", submitted_at)[0]
                   for message in messages]
        if addresses & self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        if addresses & self.script.slow:
            await asyncio.sleep(self.script.slow_seconds)
        if addresses & self.script.garbled:
            return _garbled()
        return web.json_response(answers)

    async def _server(self, request: web.Request) -> web.Response:
        """Postmark's GET /server: the server the token belongs to (a health probe)."""
        if request.headers.get("X-Postmark-Server-Token") != self.server_token:
            return _error(401, 10, "Request does not contain a valid Server token.")
        return web.json_response({"ID": 23, "Name": "Engage peer", "ApiTokens": []})

    def _mailgun_authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == _basic_auth("api", self.mailgun_api_key)

    async def _mailgun_domain(self, request: web.Request) -> web.Response:
        if not self._mailgun_authorized(request):
            return web.Response(status=401, text="Forbidden")
        return web.json_response({"domain": {"name": request.match_info["domain"],
                                             "state": "active"}})

    async def _mailgun(self, request: web.Request) -> web.Response:
        self._counted(request)
        if not self._mailgun_authorized(request):
            return web.Response(status=401, text="Forbidden")
        form = await request.post()
        to = str(form.get("to", ""))
        address = _addr_spec(to)
        if not to or address in self.script.invalid:
            return web.json_response({"message": "'to' parameter is not a valid address. "
                                                 "please check documentation"}, status=400)
        failure = self._http_failure([address])
        if failure is not None:
            return failure
        if address in self.script.slow:
            await asyncio.sleep(self.script.slow_seconds)
        domain = request.match_info["domain"]
        message_id = f"<{uuid.uuid4().hex}@{domain}>"
        with self.lock:
            self._sent.append(Sent(
                to=to, sender=str(form.get("from", "")), subject=str(form.get("subject", "")),
                text_body=str(form.get("text", "")), html_body=str(form.get("html", "")),
                headers={k[2:]: str(v) for k, v in form.items() if k.startswith("h:")},
                metadata={k[2:]: str(v) for k, v in form.items() if k.startswith("v:")},
                tag=str(form.get("o:tag", "")), message_id=message_id,
                endpoint=f"/v3/{domain}/messages"))
        return web.json_response({"id": message_id, "message": "Queued. Thank you."})

    # --- webhooks --------------------------------------------------------------------------

    def event(self, kind: str, sent: Sent, **fields: Any) -> dict[str, Any]:
        """A Postmark webhook payload of `kind` about `sent`, as Postmark posts it."""
        at = _now()
        common = {"MessageID": sent.message_id, "Metadata": sent.metadata, "Tag": sent.tag,
                  "MessageStream": "broadcast", "ServerID": 23}
        recipient = _addr_spec(sent.to)
        bounce = {"ID": next(self._event_ids), "Email": recipient, "From": sent.sender,
                  "BouncedAt": at, "Subject": sent.subject, "DumpAvailable": False,
                  "Inactive": True, "CanActivate": True}
        payloads: dict[str, dict[str, Any]] = {
            "Delivery": {"RecordType": "Delivery", "Recipient": recipient, "DeliveredAt": at,
                         "Details": "smtp;250 2.0.0 OK"},
            "Bounce": {"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1,
                       "Name": "Hard bounce", "Description": "The server was unable to "
                       "deliver your message (ex: unknown user, mailbox not found).",
                       "Details": "smtp;550 5.1.1 The email account does not exist.",
                       **bounce},
            "Open": {"RecordType": "Open", "Recipient": recipient, "ReceivedAt": at,
                     "FirstOpen": True, "Platform": "WebMail", "ReadSeconds": 5,
                     "UserAgent": "Mozilla/5.0 (peer)"},
            "Click": {"RecordType": "Click", "Recipient": recipient, "ReceivedAt": at,
                      "ClickLocation": "HTML", "Platform": "Desktop",
                      "OriginalLink": "https://club.example.com/offer",
                      "UserAgent": "Mozilla/5.0 (peer)"},
            "SpamComplaint": {"RecordType": "SpamComplaint", "Type": "SpamComplaint",
                              "TypeCode": 512, "Name": "Spam complaint",
                              "Description": "The subscriber explicitly marked this message "
                              "as spam.", "Details": "", **bounce},
            "SubscriptionChange": {"RecordType": "SubscriptionChange", "Recipient": recipient,
                                   "ChangedAt": at, "Origin": "Recipient",
                                   "SuppressSending": True,
                                   "SuppressionReason": "ManualSuppression"},
        }
        return {**common, **payloads[kind], **fields}

    def post_event(self, url: str, kind: str, sent: Sent, *,
                   auth: tuple[str, str] | None = None, **fields: Any) -> tuple[int, str]:
        """POST one webhook event to `url` from the peer's loop; (status, body) of the reply."""
        assert self._loop is not None, "start() the peer first"
        payload = self.event(kind, sent, **fields)

        async def post() -> tuple[int, str]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                headers = {"Authorization": _basic_auth(*auth)} if auth is not None else None
                async with client.post(url, json=payload, headers=headers) as response:
                    return response.status, await response.text()

        return asyncio.run_coroutine_threadsafe(post(), self._loop).result(60)


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _addr_spec(address: str) -> str:
    address = address.strip()
    if "<" in address and address.endswith(">"):
        address = address[address.rindex("<") + 1:-1]
    return address.lower()


if __name__ == "__main__":
    serve_main(lambda host, port: PostmarkPeer(host=host, port=port), __doc__.splitlines()[0])
