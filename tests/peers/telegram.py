"""The Telegram Bot API's `sendMessage` on loopback (aiohttp), answering as Telegram does.

`GET /bot{token}/getMe` answers the bot's profile (the health probe);
`POST /bot{token}/sendMessage` with `{chat_id, text}` (JSON or a form): a token other than the
peer's is 401 Unauthorized, an empty text 400 "message text is empty", one over 4096 characters
400 "message is too long"; otherwise `{ok: true, result: {message_id, chat: {id}, date, text}}`
with message ids counted per chat, the message recorded. Per chat, a test scripts instead:
`blocked` (403 "bot was blocked by the user"), `missing` (400 "chat not found"), `throttled`
(429 with `parameters.retry_after`), `unavailable` (502 with nginx's HTML page, as Telegram's
front answers) or `stalled` (accepted and recorded, the answer held back).
`GET /_peer/stats` answers counters (`accepted`, `requests`), for a benchmark that runs the peer
in its own process (`python -m tests.peers.telegram --settings-out F`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main


@dataclass(frozen=True)
class TelegramSent:
    chat_id: str
    text: str
    message_id: int
    fields: dict[str, Any]  # everything the request carried


@dataclass
class TelegramScript:
    blocked: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    throttled: dict[str, int] = field(default_factory=dict)  # chat -> retry_after seconds
    unavailable: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0


def _error(status: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


class TelegramPeer(ThreadedAiohttpPeer):
    name = "telegram"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.bot_token = f"7012345678:AA{secrets.token_urlsafe(24)}"
        self.username = "engage_club_bot"
        self.script = TelegramScript()
        self._sent: list[TelegramSent] = []
        self._answered: list[tuple[str, int]] = []
        self._next_id: dict[str, int] = defaultdict(int)

    @property
    def sent(self) -> list[TelegramSent]:
        with self.lock:
            return list(self._sent)

    @property
    def requests(self) -> list[tuple[str, int]]:
        """(chat id, HTTP status) of every sendMessage request, in arrival order."""
        with self.lock:
            return list(self._answered)

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"bot_token": self.bot_token, "base_url": self.url, "timeout": 5,
                "connect_timeout": 2, **overrides}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._send_message)
        app.router.add_get("/bot{token}/getMe", self._get_me)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        """What the peer accepted and answered, for a benchmark running it in its own process."""
        with self.lock:
            stats = {"accepted": len(self._sent), "requests": len(self._answered)}
        return web.json_response(stats)

    async def _get_me(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.bot_token:
            return _error(401, "Unauthorized")
        return web.json_response({"ok": True, "result": {
            "id": 7012345678, "is_bot": True, "first_name": "Engage Club",
            "username": self.username}})

    async def _send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.bot_token:
            return self._answer("", _error(401, "Unauthorized"))
        if request.content_type == "application/json":
            try:
                fields = json.loads(await request.read())
            except ValueError:
                return self._answer("", _error(400, "Bad Request: can't parse JSON"))
        else:
            fields = dict(await request.post())
        if not isinstance(fields, dict) or fields.get("chat_id") in (None, ""):
            return self._answer("", _error(400, "Bad Request: chat_id is empty"))
        chat_id = str(fields["chat_id"])
        text = fields.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._answer(chat_id, _error(400, "Bad Request: message text is empty"))
        if len(text) > 4096:
            return self._answer(chat_id, _error(400, "Bad Request: message is too long"))
        scripted = self._scripted(chat_id)
        if scripted is not None:
            return self._answer(chat_id, scripted)
        with self.lock:
            self._next_id[chat_id] += 1
            message_id = self._next_id[chat_id]
            self._sent.append(TelegramSent(chat_id, text, message_id, fields))
        if chat_id in self.script.stalled:
            await asyncio.sleep(self.script.stall_seconds)
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id,
                                "type": "private"}
        return self._answer(chat_id, web.json_response({"ok": True, "result": {
            "message_id": message_id, "from": {"id": 7012345678, "is_bot": True,
                                               "first_name": "Engage Club"},
            "chat": chat, "date": int(time.time()), "text": text}}))

    def _answer(self, chat_id: str, response: web.Response) -> web.Response:
        with self.lock:
            self._answered.append((chat_id, response.status))
        return response

    def _scripted(self, chat_id: str) -> web.Response | None:
        script = self.script
        if chat_id in script.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat_id in script.missing:
            return _error(400, "Bad Request: chat not found")
        if chat_id in script.throttled:
            wait = script.throttled[chat_id]
            return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        if chat_id in script.unavailable:
            return web.Response(status=502, content_type="text/html", text=(
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                "</body>\r\n</html>\r\n"))
        return None


if __name__ == "__main__":
    serve_main(lambda host, port: TelegramPeer(host=host, port=port), __doc__.splitlines()[0])
