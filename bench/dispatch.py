"""Dispatch scenarios: real workers sending real SMTP to Postfix's smtp-sink on loopback."""

from __future__ import annotations

from bench.database import broker_flush
from bench.mailings import (
    first_members_rules,
    mailing_create,
    mailing_run_until_completed,
    mailings_clear,
    messages_by_status,
)
from bench.options import Options
from bench.results import Measured, median_of
from bench.smtp_sink import SmtpSink, bare_client_rate
from bench.workers import CeleryWorkers, PeakRss

CONCURRENCY = 2
WHAT_DISPATCH = (
    "start of an email mailing (text + HTML, personalized) to the {n} earliest-joined "
    "email-consenting members (group: consent + created_at range) until `completed`, "
    "snapshot included; celery prefork x{concurrency} on Redis; all messages checked `sent`"
)


def _mailing_send(*, sink: SmtpSink, messages: int, consenting: bool,
                  name: str) -> tuple[dict[str, int], float]:
    """One mailing to the first `messages` members through running workers.

    Returns the messages by status and the seconds from start to completion; raises unless
    every message was sent or skipped with a reason.
    """
    mailings_clear()
    broker_flush()
    mailing = mailing_create(name=name, rules=first_members_rules(messages, consenting=consenting),
                             gateway_settings=sink.gateway_settings())
    seconds = mailing_run_until_completed(mailing, timeout=120 + messages / 100)
    statuses = messages_by_status(mailing)
    if not set(statuses) <= {"sent", "skipped"} or not statuses.get("sent"):
        raise RuntimeError(f"mailing {mailing.pk} completed with {statuses}; expected sent")
    return statuses, seconds


def dispatch_smtp(options: Options) -> Measured:
    """Messages/s from starting a `--messages` mailing to its completion, all sent.

    One worker (prefork, 2 children) runs for all runs; messages are cleared between runs.
    """
    sent_counts: list[int] = []

    def measure() -> float:
        statuses, seconds = _mailing_send(sink=sink, messages=options.messages, consenting=True,
                                          name="bench dispatch_smtp")
        if set(statuses) != {"sent"}:
            raise RuntimeError(f"a consenting audience had messages {statuses}")
        sent_counts.append(statuses["sent"])
        return statuses["sent"] / seconds

    with SmtpSink() as sink, CeleryWorkers(concurrency=CONCURRENCY):
        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
    what = WHAT_DISPATCH.format(n=sent_counts[-1], concurrency=CONCURRENCY)
    return Measured(sent_counts[-1], value, options.runs, {"what": what, "per_run": per_run})


def smtp_sink_ceiling(options: Options) -> Measured:
    """Messages/s a bare smtplib client pushes into the same smtp-sink on one connection."""
    with SmtpSink() as sink:
        value, per_run = median_of(options.runs, lambda: bare_client_rate(
            host=sink.host, port=sink.port, messages=options.messages))
    return Measured(options.messages, value, options.runs, {"per_run": per_run})


def _peak_rss_of_mailing(*, sink: SmtpSink, messages: int) -> tuple[dict[str, int], float]:
    with CeleryWorkers(concurrency=CONCURRENCY) as workers, PeakRss(workers) as rss:
        statuses, _ = _mailing_send(sink=sink, messages=messages, consenting=False,
                                    name="bench worker_rss_growth")
    return statuses, rss.peak_mb


def worker_rss_growth(options: Options) -> Measured:
    """MB of peak worker RSS (process tree, sampled every 0.2 s) a large mailing adds.

    Peak during a mailing to the first `--rss-large` members minus peak during one to the first
    `--messages`, each with a fresh worker. The audiences are not filtered by consent, so each
    mailing has that many message rows, ~70% of them sent and the rest skipped (the demo's
    consent rate). Flat memory means a batch releases what it loads.
    """
    with SmtpSink() as sink:
        try:
            small, small_mb = _peak_rss_of_mailing(sink=sink, messages=options.messages)
            large, large_mb = _peak_rss_of_mailing(sink=sink, messages=options.rss_large)
        finally:
            mailings_clear()
            broker_flush()
    return Measured(sum(large.values()), large_mb - small_mb, 1, {
        "what": f"peak RSS of the worker tree (main + {CONCURRENCY} prefork children); n is "
                "message rows of the large mailing",
        "large_statuses": large, "large_peak_mb": round(large_mb, 1),
        "small_statuses": small, "small_peak_mb": round(small_mb, 1),
    })
