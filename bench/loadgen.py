"""A load generator for the member API: `python -m bench.loadgen --url U --members F ...`.

Each request is one member's call with that member's app token, alternating the home call and
the first inbox page. `--rate R` starts R requests a second on schedule (open loop: a slow
answer does not slow the schedule, it shows as latency); `--concurrency C` keeps C requests in
flight instead (closed loop: the most the server serves). Writes the latencies (ms) of every
call, per call (failed ones included, with the time they took), and the errors by status or
exception to `--out`.

The client is HTTP/1.1 written on asyncio's protocol layer, requests prebuilt as bytes: it runs
on the same two cores as the server it measures, so every microsecond it spends is taken from
the server. (aiohttp's client cost about 0.4 ms of CPU per request here, a tenth of the
server's own work.) Connections are kept alive where the server allows it and opened anew
where it closes them (gunicorn's sync workers do, after every answer).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CALLS = {"home": "/api/v1/me/home/", "inbox": "/api/v1/me/messages/"}
TIMEOUT_S = 30.0


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"requests": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"requests": len(ordered), "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(ordered), 2)}


class ResponseError(Exception):
    """The server's answer could not be read as one HTTP/1.1 response."""


class HttpConnection(asyncio.Protocol):
    """One connection, one request at a time; `answer` resolves to (status, keep_alive)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        self._buffer.clear()
        self.answer = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.answer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer is None or self.answer.done():
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.answer.set_exception(ResponseError("an answer without Content-Length"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:line_end if line_end > 0 else len(head)])
        if len(self._buffer) >= end + 4 + length:
            keep_alive = head.startswith(b"http/1.1") and b"\r\nconnection: close" not in head
            self.answer.set_result((int(head[9:12]), keep_alive))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ResponseError("the server closed the connection"))


class Client:
    """Idle keep-alive connections to one server, and new ones when none is idle."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[HttpConnection] = []

    async def get(self, request: bytes) -> int:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                break
        else:
            # Connected by address: create_connection(host, port) would ask getaddrinfo in a
            # thread for every new connection.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (self.host, self.port))
            except BaseException:
                sock.close()
                raise
            _, conn = await loop.create_connection(HttpConnection, sock=sock)
        try:
            status, keep_alive = await asyncio.wait_for(conn.send(request), TIMEOUT_S)
        except BaseException:
            assert conn.transport is not None
            conn.transport.abort()
            raise
        if keep_alive and not conn.closed:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return status

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()


def request_bytes(*, host: str, path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "X-Forwarded-Proto: https\r\nAccept: application/json\r\n\r\n").encode()


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    index, shards = (int(part) for part in args.shard.split("/"))
    members = json.loads(Path(args.members).read_text())[index::shards]
    host = urlsplit(args.url).netloc
    plan = itertools.cycle([
        (name, request_bytes(host=host, path=path, token=f"mt_{args.token_secret}-{member}"))
        for member in members for name, path in CALLS.items()])
    latencies: dict[str, list[float]] = {name: [] for name in CALLS}
    errors: dict[str, int] = {}
    client = Client(args.url)

    async def call(name: str, request: bytes) -> None:
        start = time.perf_counter()
        try:
            status: int | str = await client.get(request)
        except (OSError, ResponseError, TimeoutError) as exc:
            status = type(exc).__name__
        # A failed call counts with the time it took (a timeout as 30 s): an overloaded
        # server shows in the percentiles, not as a shorter list of fast answers.
        latencies[name].append((time.perf_counter() - start) * 1000)
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1

    started = time.perf_counter()
    deadline = started + args.duration
    if args.rate:
        interval = 1 / args.rate
        pending: set[asyncio.Task[None]] = set()
        n = 0
        while True:
            due = started + n * interval
            if due >= deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(call(*next(plan)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)
    else:
        async def closed_loop() -> None:
            while time.perf_counter() < deadline:
                await call(*next(plan))

        await asyncio.gather(*(closed_loop() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    client.close()
    return {"latencies_ms": latencies, "errors": errors, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--members", required=True, help="JSON file of member ids")
    parser.add_argument("--token-secret", required=True)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(_run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
