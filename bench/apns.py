"""dispatch_apns: real workers sending a push mailing to Apple devices through the APNs adapter
(libcurl's HTTP/2 over TLS, one connection per batch, its default 64 streams in flight) to a
loopback APNs peer in a process of its own; beside it, the peer's own ceiling and what the
adapter sends alone (no workers, no database), one stream at a time and with its concurrency.

Two peers. tests/peers/apns.py, the peer of the tests, is pure-Python HTTP/2 (`h2`): about
0.43 ms of CPU per push (python_peer_cpu_ms_per_push), a whole core at 2,300 pushes/s, on a
2-core machine whose other core the workers need; h2load got 1,400 to 2,250 pushes/s from it.
(The 749/s measured before from a bare httpcore client was that client's limit, not the
peer's.) The mailings and the adapter's own runs therefore go to tests/peers/apns_node.js
(Node's http2, nghttp2 in C: 0.08 to 0.17 ms per push), which checks each push as the Python
peer does (ES256 provider token, topic, headers, token, payload size) and only counts. The
Python peer's ceiling is still measured, to show why it is not the one measured against.

A ceiling is what a bare client gets from the peer on one connection with 64 streams in flight,
one provider token, one prebuilt request: h2load (nghttp2's HTTP/2 load generator, Debian's
nghttp2-client) when it is installed, else a bare libcurl multi loop in this process (the
adapter without its per-push work), which the line names.

The audience is bench/push.py's (`push_audience_ensure`), each member with an Apple device
instead of a Firebase one. An APNs token is 64 hex digits; the bench writes them after its
TOKEN_PREFIX, which marks its devices, and both peers take that prefix before a well-formed
token and check the rest as they check any token.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pycurl

from bench.cpu import cpu_per_message
from bench.database import broker_flush
from bench.mailings import mailings_clear
from bench.options import Options
from bench.peers import PeerProcess, batch_rate
from bench.push import (
    BODY,
    TOKEN_PREFIX,
    _audience_list,
    push_audience_ensure,
    push_mailing_send,
    quiet_hours_lifted,
)
from bench.results import Measured, median_of
from bench.workers import CeleryWorkers
from communications.gateways import GatewayConfig, OutboundMessage, gateway_for
from communications.gateways.apns import DEFAULT_CONCURRENCY, apns_id
from members.models import Device
from tests.peers.apns import node_peer_command

CONCURRENCY = 2  # celery prefork children, as the other dispatch scenarios
TOKEN_SQL = f"'{TOKEN_PREFIX}' || lpad(to_hex(id), 64, '0')"
# Pushes of the measurements beside the mailing: enough for a steady figure, few enough for
# the one-stream run to stay short.
ALONE_MESSAGES = 3000
H2LOAD_HINT = "apt-get install nghttp2-client"
TITLE = "Ann, your points are waiting"
WHAT = ("start of a push mailing (title + body, personalized) to the {n} first active members, "
        "each with an active Apple device and push consent, through an APNs gateway (libcurl "
        "HTTP/2 over TLS, ES256 provider token, one connection per batch, {streams} streams in "
        "flight) to the loopback APNs peer on Node.js (tests/peers/apns_node.js, its own "
        "process); celery prefork x{concurrency} on Redis. value: sent / (completed_at - first "
        "claim); with_snapshot_per_run counts from the start instead; every message checked "
        "`sent` and counted by the peer")


def _node_peer() -> PeerProcess:
    return PeerProcess("apns_node", url_setting="stats_url", command=node_peer_command)


def _peer_cpu_seconds(peer: PeerProcess) -> float:
    assert peer.process is not None
    fields = Path(f"/proc/{peer.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _tokens(count: int) -> list[str]:
    return [f"{TOKEN_PREFIX}{n:064x}" for n in range(1, count + 1)]


def adapter_alone(*, settings: dict[str, Any], messages: int, concurrency: int) -> float:
    """Pushes/s of one batch of `messages` through the adapter, `concurrency` streams."""
    gateway = gateway_for(GatewayConfig(
        gateway_id=0, channel="push", provider="apns",
        settings={**settings, "concurrency": concurrency}, sender="",
        price_per_message=Decimal(0)))
    batch = [OutboundMessage(message_id=n, address=token, subject=TITLE, body=BODY)
             for n, token in enumerate(_tokens(messages), start=1)]
    return batch_rate(gateway, batch)


def _ceiling_request(settings: dict[str, Any]) -> tuple[str, list[str], bytes]:
    """The one push a bare client sends over and over: URL, header lines, payload."""
    token = jwt.encode({"iss": settings["team_id"], "iat": int(time.time())},
                       settings["private_key"], algorithm="ES256",
                       headers={"kid": settings["key_id"]})
    headers = [f"apns-topic: {settings['topic']}", "apns-push-type: alert",
               f"apns-id: {apns_id(1)}", f"authorization: bearer {token}"]
    body = json.dumps({"aps": {"alert": {"title": TITLE, "body": BODY}},
                       "engage_message_id": "1"}).encode()
    return f"{settings['endpoint']}/3/device/{_tokens(1)[0]}", headers, body


def _h2load_rate(settings: dict[str, Any], messages: int) -> float:
    url, headers, body = _ceiling_request(settings)
    with tempfile.NamedTemporaryFile(suffix=".json") as payload:
        payload.write(body)
        payload.flush()
        run = subprocess.run(
            ["h2load", "-n", str(messages), "-c", "1", "-m", str(DEFAULT_CONCURRENCY),
             "-d", payload.name, *(part for line in headers for part in ("-H", line)), url],
            capture_output=True, text=True, timeout=600, check=False)
    finished = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", run.stdout)
    if run.returncode or finished is None or f"{messages} succeeded" not in run.stdout \
            or f"status codes: {messages} 2xx" not in run.stdout:
        raise RuntimeError(f"h2load did not get {messages} pushes accepted:\n"
                           f"{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return float(finished.group(1))


def _libcurl_rate(settings: dict[str, Any], messages: int) -> float:
    url, headers, body = _ceiling_request(settings)
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, 1)
    handles = []
    for _ in range(min(DEFAULT_CONCURRENCY, messages)):
        curl = pycurl.Curl()
        for option, value in ((pycurl.URL, url), (pycurl.POSTFIELDS, body),
                              (pycurl.HTTPHEADER, headers), (pycurl.PIPEWAIT, 1),
                              (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS),
                              (pycurl.CAINFO, settings["ca_file"])):
            curl.setopt(option, value)
        handles.append(curl)
    start = time.perf_counter()
    for curl in handles:
        multi.add_handle(curl)
    started, done = len(handles), 0
    try:
        while done < messages:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            queued = 1
            while queued:
                queued, ok, failed = multi.info_read()
                if failed or any(c.getinfo(pycurl.RESPONSE_CODE) != 200 for c in ok):
                    raise RuntimeError(f"the peer did not accept a push: {failed or 'a refusal'}")
                for curl in ok:
                    done += 1
                    multi.remove_handle(curl)
                    if started < messages:
                        multi.add_handle(curl)
                        started += 1
            multi.select(0.1)
        return messages / (time.perf_counter() - start)
    finally:
        for curl in handles:
            curl.close()
        multi.close()


def peer_ceiling(peer: PeerProcess, *, messages: int) -> tuple[float, str, float]:
    """Pushes/s the peer accepts from a bare client on one connection with 64 streams in
    flight, the client's name, and the peer's CPU milliseconds per push meanwhile."""
    cpu = _peer_cpu_seconds(peer)
    if shutil.which("h2load"):
        rate, client = _h2load_rate(peer.settings, messages), "h2load"
    else:
        rate, client = _libcurl_rate(peer.settings, messages), "a bare libcurl multi loop"
    return rate, client, (_peer_cpu_seconds(peer) - cpu) * 1000 / messages


def dispatch_apns(options: Options) -> Measured:
    """Pushes/s from the first claim of a `--messages` push mailing to Apple devices to its
    completion; one worker (prefork, 2 children) for all runs, a fresh Node.js peer per run.
    Then, against one more Node.js peer: its ceiling, and the adapter alone with one stream
    and with 64; and the Python peer's ceiling."""
    if shutil.which("node") is None:
        raise RuntimeError("dispatch_apns needs Node.js 20 (`node`) for its APNs peer")
    ids = push_audience_ensure(options.messages, platform=Device.Platform.APNS,
                               token_sql=TOKEN_SQL)
    target_group = _audience_list(ids)
    runs: list[dict[str, Any]] = []

    with quiet_hours_lifted(channel="push"), CeleryWorkers(concurrency=CONCURRENCY) as workers:
        def measure() -> float:
            run = push_mailing_send(target_group=target_group, workers=workers,
                                    provider="apns", url_setting="stats_url",
                                    peer_command=node_peer_command)
            runs.append(run)
            return run["sent"] / run["seconds"]

        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    alone = min(options.messages, ALONE_MESSAGES)
    with _node_peer() as peer:
        ceiling, client, peer_ms = peer_ceiling(peer, messages=alone)
        one_stream = adapter_alone(settings=peer.settings, messages=alone, concurrency=1)
        cpu = time.process_time()
        streams = adapter_alone(settings=peer.settings, messages=alone,
                                concurrency=DEFAULT_CONCURRENCY)
        adapter_us = (time.process_time() - cpu) * 1e6 / alone
        connections = peer.stats()["pushing_connections"]
    if connections != 3:
        raise RuntimeError(f"{connections} connections pushed for 3 batches of one each")
    with PeerProcess("apns", url_setting="stats_url") as python_peer:
        python_ceiling, python_client, python_peer_ms = peer_ceiling(python_peer,
                                                                     messages=alone)
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], streams=DEFAULT_CONCURRENCY,
                            concurrency=CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        **cpu_per_message(runs),
        "peer_ceiling": round(ceiling, 3),
        "peer_ceiling_what": f"{alone} pushes to the Node.js peer from {client}, "
                             f"{DEFAULT_CONCURRENCY} streams on one connection, one prebuilt "
                             "request, one provider token",
        "peer_cpu_ms_per_push": round(peer_ms, 3),
        "python_peer_ceiling": round(python_ceiling, 3),
        "python_peer_ceiling_what": f"the same from {python_client} to tests/peers/apns.py, "
                                    "the peer of the tests (pure-Python HTTP/2)",
        "python_peer_cpu_ms_per_push": round(python_peer_ms, 3),
        "adapter_alone_one_stream": round(one_stream, 3),
        "adapter_alone_streams": round(streams, 3),
        "adapter_alone_cpu_us_per_push": round(adapter_us, 1),
        "adapter_alone_what": f"one batch of {alone} pushes through the adapter in this process "
                              f"(no workers, no database) to the Node.js peer, one connection, "
                              f"1 stream in flight vs {DEFAULT_CONCURRENCY}; CPU of this process "
                              f"per push in the {DEFAULT_CONCURRENCY}-stream batch",
    })
