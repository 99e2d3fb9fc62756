"""Serving an aiohttp peer on loopback from a thread of its own, for tests.

A subclass builds its `web.Application` in `app()` and says in `gateway_settings()` how a
gateway reaches it; `start()` returns once the peer listens (its port chosen by the OS unless
given) and `stop()` ends it. Replies a test holds back are cut short at stop, so a stalled
answer never holds up the end of a test. `serve_main` serves a peer from its own process instead
(`python -m tests.peers.viber --settings-out F`), for a benchmark, where sharing the client's
GIL would measure the wrong thing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import uvloop
from aiohttp import web


class ThreadedAiohttpPeer:
    name = "peer"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        raise NotImplementedError

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def serve(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self.serve())
            except BaseException as exc:  # noqa: BLE001  (reported to the starting thread)
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}-peer", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def callback_post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """POST a JSON `body` to `url` as a provider posts a callback or receipt; the HTTP status
    and body answered."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serve_main(make_peer: Callable[[str, int], ThreadedAiohttpPeer], description: str,
               **settings_overrides: Any) -> None:
    """Serve a peer until SIGTERM, writing the gateway settings to --settings-out once it
    listens (whole, then renamed: a reader polling for the file never sees half of it).

    On uvloop's event loop: the peer shares the benchmark's two cores with the senders it
    measures, and its loop and sockets cost it about a tenth less CPU per request there."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--settings-out", type=Path, required=True)
    args = parser.parse_args()
    peer = make_peer(args.host, args.port)

    async def run() -> None:
        await peer.serve()
        partial = args.settings_out.with_suffix(".partial")
        partial.write_text(json.dumps(peer.gateway_settings(**settings_overrides)))
        partial.replace(args.settings_out)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
        await peer.shutdown()

    uvloop.run(run())
