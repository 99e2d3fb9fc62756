"""An HTTP server on loopback that answers every request with a redirect, as a public endpoint
turned hostile would: `302 Location: <location>` (e.g. the cloud metadata service, or another
peer standing for an address inside the network). It counts the requests it got, so a test
can tell a call was made once and the redirect was not followed back to it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer


class RedirectingPeer(ThreadedAiohttpPeer):
    name = "redirecting-http"

    def __init__(self, *, location: str, status: int = 302, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.location = location
        self.status = status
        self.requests: list[str] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"url": self.hook_url, **overrides}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.redirect)
        return app

    async def redirect(self, request: web.Request) -> web.Response:
        await request.read()
        with self.lock:
            self.requests.append(f"{request.method} {request.path}")
        return web.Response(status=self.status, headers={"Location": self.location})
