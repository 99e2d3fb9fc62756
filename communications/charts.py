"""Charts for the marketer screens as inline SVG, drawn on the server: no JavaScript library,
nothing from a CDN, readable without scripts and printable.

Every text that goes into a chart is escaped here (labels can be names a marketer typed).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from communications.models import Message
from communications.selectors.reports import AUDIENCE_LABELS, FUNNEL_LABELS, MailingReport

# Colours by meaning, readable on the admin's light and dark themes.
TONES = {
    "ok": "#2e7d32",
    "info": "#1565c0",
    "warn": "#ef6c00",
    "bad": "#c62828",
    "muted": "#78909c",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
LABEL_CHARS = 36  # what fits in the label column of a bar chart at 12px


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    tone: str = "info"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(bars: Sequence[Bar], *, title: str, width: int = 640) -> SafeString:
    """Horizontal bars, one per row, each labelled with its name and value."""
    row, label_width, value_width = 24, 240, 80
    plot = width - label_width - value_width
    top = max((bar.value for bar in bars), default=0) or 1
    height = row * len(bars) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="engage-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for index, bar in enumerate(bars):
        y = 4 + index * row
        length = 0 if bar.value <= 0 else max(1.0, plot * bar.value / top)
        colour = TONES.get(bar.tone, TONES["info"])
        text = f"{escape(bar.label)}: {_number(bar.value)}"
        # A long label is cut to fit beside the bars; the tooltip has it whole.
        shown = bar.label if len(bar.label) <= LABEL_CHARS else bar.label[:LABEL_CHARS - 1] + "…"
        parts.append(
            f'<g><title>{text}</title>'
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" {FONT} '
            f'fill="currentColor">{escape(shown)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{colour}" rx="2"></rect>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" {FONT} '
            f'fill="currentColor">{_number(bar.value)}</text></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped  # nosec B308 B703


def time_chart(points: Sequence[tuple[datetime, float]], *, title: str, bucket: timedelta,
               start: datetime | None = None, end: datetime | None = None,
               unit: str = "", width: int = 640, height: int = 200) -> SafeString:
    """Vertical bars over time, one per bucket that has a value (the others are gaps), with
    the first and last time on the x axis and the highest value on the y axis."""
    left, right, top_pad, bottom = 56, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="engage-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" '
        f'y2="{top_pad + plot_h}" stroke="currentColor" stroke-opacity="0.4"></line>'
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" '
        f'stroke="currentColor" stroke-opacity="0.4"></line>'
    ]
    if not points:
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{top_pad + plot_h / 2:.0f}" '
                     f'text-anchor="middle" {FONT} fill="currentColor">Nothing sent yet'
                     f'</text></svg>')
        return mark_safe("".join(parts))  # noqa: S308 - constant text  # nosec B308 B703
    first = min(start or points[0][0], points[0][0])
    last = max(end or points[-1][0], points[-1][0] + bucket)
    span = max((last - first).total_seconds(), bucket.total_seconds())
    peak = max(value for _, value in points) or 1
    bar_w = max(1.0, plot_w * bucket.total_seconds() / span - 1)
    for moment, value in points:
        x = left + plot_w * (moment - first).total_seconds() / span
        h = plot_h * value / peak
        label = f"{timezone.localtime(moment):%Y-%m-%d %H:%M}: {_number(value)}{unit}"
        parts.append(f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}" fill="{TONES["info"]}"><title>{escape(label)}</title>'
                     f'</rect>')
    clock = "%H:%M" if span < 86400 else "%m-%d %H:%M"
    axis = [
        (left - 6, top_pad + 10, "end", f"{_number(peak)}{unit}"),
        (left - 6, top_pad + plot_h, "end", "0"),
        (left, height - 8, "start", f"{timezone.localtime(first):{clock}}"),
        (left + plot_w, height - 8, "end", f"{timezone.localtime(last):{clock}}"),
    ]
    for x, y, anchor, text in axis:
        parts.append(f'<text x="{x}" y="{y}" text-anchor="{anchor}" {FONT} '
                     f'fill="currentColor">{escape(text)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped  # nosec B308 B703


# --- the mailing report ---------------------------------------------------------------------

def mailing_report_context(report: MailingReport) -> dict[str, Any]:
    """What the report templates show: the audience split, funnel and throughput as SVG
    charts, and the address issues by reason."""
    audience_tones = {"reachable": "ok", "address_issue": "warn", "capped": "warn"}
    audience = [Bar(AUDIENCE_LABELS[key], value, audience_tones.get(key, "muted"))
                for key, value in report.audience.items()]
    statuses = dict(Message.Status.choices)
    reasons = dict(Message.SkipReason.choices)
    funnel = [Bar(FUNNEL_LABELS[key], value, "muted" if key == "queued" else "ok")
              for key, value in report.funnel.items()]
    funnel += [Bar(statuses[status], value, "bad")
               for status, value in report.not_delivered.items() if value]
    funnel += [Bar(f"Skipped: {reasons[reason]}", value, "warn")
               for reason, value in report.skipped_by_reason.items() if value]
    minutes = report.bucket_minutes
    charts = {
        "audience": bar_chart(audience, title="Audience split"),
        "funnel": bar_chart(funnel, title="Funnel"),
        "throughput": time_chart(
            [(bucket.start, bucket.per_minute) for bucket in report.throughput],
            title=f"Messages sent per minute ({minutes}-minute buckets)",
            bucket=timedelta(minutes=minutes), unit="/min"),
    }
    address_issues = [(reasons[reason], value) for reason, value in report.address_issues.items()]
    return {"report": report, "charts": charts, "address_issues": address_issues}
