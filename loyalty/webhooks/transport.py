"""The HTTP side of deliveries: a claimed batch of prepared requests sent concurrently, at most
ENGAGE_WEBHOOK_IN_FLIGHT at a time, each answer reduced to what the attempt log keeps.

aiohttp rather than httpx: on this 2-core machine, posting to the loopback receiver, httpx's
AsyncClient managed about 150 calls/s at 4 ms of CPU each, aiohttp's client about 2,300/s at
0.4 ms (64 in flight, same peer, same process), and the delivery target is 1,000/s beside the
database and the receiver.

Each worker process keeps one event loop and one client session, so connections (and TLS
sessions) to a platform are reused from one batch to the next; a forked child makes its own.
Every call is bounded by ENGAGE_WEBHOOK_TIMEOUT in total (connect, send, answer), which is
what the claim's lease counts on. Redirects are not followed: they could point inside the
network.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import aiohttp
from django.conf import settings

from config.retry_after import retry_after_seconds
from config.ssrf import PublicAddressResolver
from loyalty.webhooks.connectors.base import OutgoingRequest

EXCERPT_CHARS = 1024


@dataclass(frozen=True)
class Answer:
    """What came back from one call: a status, or the error instead of one."""

    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""
    # The receiver's Retry-After (429, 503), in seconds.
    retry_after: float | None = None


class _Transport:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        # ENGAGE_WEBHOOK_ALLOW_PRIVATE as it was when the session was made: its resolver
        # depends on it, so a session made while private receivers were allowed must not
        # serve calls once they are not (tests and benchmarks switch it within a process).
        self.session_allows_private: bool | None = None
        atexit.register(self.close)

    def close(self) -> None:
        if self.pid != os.getpid() or self.loop.is_closed():
            return
        if self.session is not None and not self.session.closed:
            self.loop.run_until_complete(self.session.close())
        self.loop.close()

    async def _post(self, request: OutgoingRequest, *, timeout: float,
                    slots: asyncio.Semaphore, scope: Hashable,
                    halted: set[Hashable]) -> Answer | None:
        assert self.session is not None
        async with slots:
            if scope is not None and scope in halted:
                return None
            answer = await self._call(request, timeout=timeout)
            if scope is not None and answer.status_code == 410:
                halted.add(scope)
            return answer

    async def _call(self, request: OutgoingRequest, *, timeout: float) -> Answer:
        assert self.session is not None
        started = time.monotonic()
        try:
            async with self.session.post(
                    request.url, data=request.body, headers=request.headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                # Only the excerpt is read: a huge answer costs no more than that.
                head = b""
                while len(head) < EXCERPT_CHARS:
                    chunk = await response.content.read(EXCERPT_CHARS - len(head))
                    if not chunk:
                        break
                    head += chunk
                excerpt = head.decode(response.charset or "utf-8", errors="replace")
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except TimeoutError:
            return Answer(None, _ms_since(started), error=f"timeout after {timeout:g}s")
        except (aiohttp.ClientError, OSError, LookupError) as exc:
            return Answer(None, _ms_since(started),
                          error=f"{type(exc).__name__}: {exc}"[:300])
        return Answer(status, _ms_since(started), excerpt[:EXCERPT_CHARS],
                      retry_after=retry_after)

    async def send(self, requests: Sequence[OutgoingRequest], *, timeout: float,
                   in_flight: int, scopes: Sequence[Hashable] | None = None
                   ) -> list[Answer | None]:
        allow_private = bool(settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE)
        if self.session is not None and not self.session.closed \
                and self.session_allows_private != allow_private:
            await self.session.close()
        if self.session is None or self.session.closed:
            self.session_allows_private = allow_private
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, ttl_dns_cache=10,
                    # The addresses connected to are checked, not only the ones the URL check
                    # saw: a name made to resolve inside the network meanwhile is refused.
                    resolver=None if allow_private else PublicAddressResolver()),
                auto_decompress=True)
        slots = asyncio.Semaphore(in_flight)
        halted: set[Hashable] = set()
        return list(await asyncio.gather(*(
            self._post(request, timeout=timeout, slots=slots, scope=scope, halted=halted)
            for request, scope in zip(requests, scopes or [None] * len(requests), strict=True))))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


_transport: _Transport | None = None
_lock = threading.Lock()


def requests_send(requests: Sequence[OutgoingRequest], *, timeout: float, in_flight: int,
                  scopes: Sequence[Hashable] | None = None) -> list[Answer | None]:
    """Send every request, `in_flight` at a time; the answers in the requests' order.

    `scopes` (one per request, None for none) name the receiver each request goes to: once one
    answers 410 Gone, its requests not yet started are not sent, and their answer is None."""
    global _transport
    if not requests:
        return []
    with _lock:
        if _transport is None or _transport.pid != os.getpid():
            _transport = _Transport()
        return _transport.loop.run_until_complete(
            _transport.send(requests, timeout=timeout, in_flight=in_flight, scopes=scopes))
