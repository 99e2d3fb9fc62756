"""The mailing report (selectors.reports) as the rows of one CSV table.

One long table rather than several: a spreadsheet filters it by `section` (mailing, audience,
funnel, status, skipped, throughput, cost, error) and every row has the same columns.
`messages` is a count of messages; `amount` a rate per minute (throughput) or a cost; `code` the
report's key, the gateway's id or the provider's error code. Cells are made spreadsheet-safe
by config.csv_export.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from communications.models import Mailing, Message
from communications.selectors.reports import AUDIENCE_LABELS, FUNNEL_LABELS, MailingReport

REPORT_CSV_HEADER = ["section", "name", "code", "messages", "amount", "detail"]


def mailing_report_csv_rows(*, mailing: Mailing, report: MailingReport) -> Iterator[list[Any]]:
    statuses = dict(Message.Status.choices)
    reasons = dict(Message.SkipReason.choices)
    yield ["mailing", mailing.name, report.state, report.total, "",
           f"channel {report.channel or '—'}; as of {report.generated_at.isoformat()}; "
           f"test sends not counted"]
    for key, count in report.audience.items():
        yield ["audience", AUDIENCE_LABELS[key], key, count, "", ""]
    for key, count in report.funnel.items():
        yield ["funnel", FUNNEL_LABELS[key], key, count, "", ""]
    for status, count in report.statuses.items():
        yield ["status", statuses[status], status, count, "", ""]
    for reason, count in report.skipped_by_reason.items():
        yield ["skipped", reasons[reason], reason, count, "", ""]
    for bucket in report.throughput:
        yield ["throughput", bucket.start, "", bucket.sent, bucket.per_minute,
               f"{report.bucket_minutes}-minute bucket; amount is messages per minute"]
    for cost in report.cost_by_gateway:
        yield ["cost", cost.gateway, cost.gateway_id, cost.messages, cost.cost, ""]
    yield ["cost", "Total", "", sum(cost.messages for cost in report.cost_by_gateway),
           report.cost_total, ""]
    for error in report.errors:
        yield ["error", error.gateway, error.code, error.count, "", error.example]
