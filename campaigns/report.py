"""The campaign report as the admin page and the downloads show it: the figures of
`campaigns.selectors_metrics`, drawn as server-side SVG (communications.charts' bars and
tones), and the same lines as CSV.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from campaigns.models import Campaign
from campaigns.selectors_metrics import STAGES, CampaignMetrics, MailingResult
from communications.charts import FONT, LABEL_CHARS, TONES, Bar, bar_chart
from communications.models import OrderCredit
from communications.selectors.experiments import Lift
from communications.selectors.reports import FUNNEL_LABELS
from config.csv_export import csv_lines

STAGE_TONES = {"sent": "muted", "delivered": "info", "opened": "ok", "clicked": "warn"}


def _percent(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    # Small shares keep two decimals, so 0.04% of a budget does not read as nothing.
    return f"{value * 100:,.2f}%" if abs(value) < Decimal("0.01") else f"{value * 100:,.1f}%"


def _money(value: Decimal | None, currency: str) -> str:
    return "—" if value is None else f"{value:,.2f} {currency}"


def grouped_bar_chart(groups: Sequence[tuple[str, Sequence[Bar]]], *, title: str,
                      width: int = 640) -> SafeString:
    """One labelled group of thin bars per row (a mailing's funnel stages), on one scale, with
    a legend of the first group's bar labels."""
    bar_h, gap, label_width, value_width = 10, 10, 200, 80
    plot = width - label_width - value_width
    per_group = max((len(bars) for _, bars in groups), default=0)
    top = max((bar.value for _, bars in groups for bar in bars), default=0) or 1
    legend_h = 22
    group_h = per_group * bar_h + gap
    height = legend_h + group_h * len(groups) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="engage-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    if groups:
        x = label_width
        for bar in groups[0][1]:
            colour = TONES.get(bar.tone, TONES["info"])
            parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"></rect>'
                         f'<text x="{x + 14}" y="13" {FONT} fill="currentColor">'
                         f'{escape(bar.label)}</text>')
            x += 14 + 8 * len(bar.label) + 16
    for index, (label, bars) in enumerate(groups):
        y = legend_h + index * group_h
        shown = label if len(label) <= LABEL_CHARS - 8 else label[:LABEL_CHARS - 9] + "…"
        parts.append(f'<g><title>{escape(label)}</title><text x="{label_width - 8}" '
                     f'y="{y + per_group * bar_h / 2 + 4:.0f}" text-anchor="end" {FONT} '
                     f'fill="currentColor">{escape(shown)}</text></g>')
        for position, bar in enumerate(bars):
            length = 0 if bar.value <= 0 else max(1.0, plot * bar.value / top)
            colour = TONES.get(bar.tone, TONES["info"])
            bar_y = y + position * bar_h
            parts.append(
                f'<g><title>{escape(label)} · {escape(bar.label)}: {bar.value:,.0f}</title>'
                f'<rect x="{label_width}" y="{bar_y}" width="{length:.1f}" '
                f'height="{bar_h - 2}" fill="{colour}"></rect>'
                f'<text x="{label_width + length + 4:.1f}" y="{bar_y + 8}" '
                f'font-family="system-ui, sans-serif" font-size="9" fill="currentColor">'
                f'{bar.value:,.0f}</text></g>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped  # nosec B308 B703


def _lift_rows(metrics: CampaignMetrics, lifts: dict[int, Lift]) -> list[dict[str, Any]]:
    rows = []
    for result in metrics.mailings:
        lift = lifts.get(result.mailing_id)
        if lift is None:
            continue
        interval = ("—" if lift.ci_low is None else
                    f"{_percent(lift.ci_low)} to {_percent(lift.ci_high)}")
        rows.append({"name": result.name, "lift": lift,
                     "sent_rate": _percent(lift.sent.conversion_rate),
                     "holdout_rate": _percent(lift.holdout.conversion_rate),
                     "absolute": _percent(lift.absolute), "interval": interval,
                     "relative": _percent(lift.relative)})
    return rows


def campaign_report_context(campaign: Campaign, metrics: CampaignMetrics,
                            lifts: dict[int, Lift]) -> dict[str, Any]:
    """The report page's figures, as labelled values, and its charts."""
    currency = metrics.currency
    figures = [
        ("Spend", _money(metrics.spent, currency)),
        ("Budget", _money(metrics.budget, currency) if metrics.budget is not None
         else "no budget"),
        ("Budget used", _percent(metrics.budget_used)),
        ("Messages sent", f"{metrics.messages_sent:,}"),
        ("Members reached", f"{metrics.members_reached:,}"),
        ("Orders credited", f"{metrics.orders:,}"),
        ("Revenue", _money(metrics.revenue, currency)),
        ("Average order", _money(metrics.average_order, currency)),
        ("Active members (buyers)", f"{metrics.active_members:,}"),
        ("Discounts granted", _money(metrics.discounts, currency)),
        ("Points granted", f"{metrics.points:,}"),
        ("Cost per member reached", _money(metrics.cost_per_member_reached, currency)),
        ("Acquisition cost (per buyer)", _money(metrics.acquisition_cost, currency)),
        ("Conversion (buyers / reached)", _percent(metrics.conversion)),
        ("ROI ((revenue − spend) / spend)", _percent(metrics.roi)),
    ]
    over = metrics.budget is not None and metrics.spent > metrics.budget
    money_bars = [Bar("Spend", float(metrics.spent), "bad" if over else "warn"),
                  Bar("Revenue", float(metrics.revenue), "ok")]
    if metrics.budget is not None:
        money_bars.insert(0, Bar("Budget", float(metrics.budget), "muted"))
    mailings = metrics.mailings
    charts = {
        "money": bar_chart(money_bars, title=f"Budget, spend and revenue ({currency})"),
        "funnel": grouped_bar_chart(
            [(result.name, [Bar(FUNNEL_LABELS[stage], result.funnel[stage],
                                STAGE_TONES[stage]) for stage in STAGES])
             for result in mailings], title="Funnel per mailing"),
        "revenue": bar_chart([Bar(result.name, float(result.revenue), "ok")
                              for result in mailings],
                             title=f"Credited revenue per mailing ({currency})"),
        "roi": bar_chart([Bar(result.name, float(result.roi * 100), "ok" if result.roi > 0
                              else "bad")
                          for result in mailings if result.roi is not None],
                         title="ROI per mailing (%; bars only where positive)"),
    }
    lift_rows = _lift_rows(metrics, lifts)
    if lift_rows:
        charts["lift"] = grouped_bar_chart(
            [(row["name"], [
                Bar("Sent", float((row["lift"].sent.conversion_rate or 0) * 100), "info"),
                Bar("Held out", float((row["lift"].holdout.conversion_rate or 0) * 100),
                    "muted")]) for row in lift_rows],
            title="Conversion: sent vs held out (%)")
    rows = [{"result": result, "roi": _percent(result.roi),
             "conversion": _percent(result.conversion),
             "spent": _money(result.spent, currency), "revenue": _money(result.revenue, currency)}
            for result in mailings]
    return {"campaign": campaign, "metrics": metrics, "figures": figures, "charts": charts,
            "rows": rows, "lift_rows": lift_rows}


REPORT_HEADER = ["mailing", "state", "started_at", "audience", *STAGES, "failed", "skipped",
                 "held_out", "spent", "orders", "revenue", "conversion", "roi",
                 "sent_conversion_rate", "holdout_conversion_rate", "lift", "lift_ci_low",
                 "lift_ci_high"]


def _mailing_cells(result: MailingResult, lift: Lift | None) -> list[Any]:
    lift_cells = ([lift.sent.conversion_rate, lift.holdout.conversion_rate, lift.absolute,
                   lift.ci_low, lift.ci_high] if lift is not None else [None] * 5)
    return [result.name, result.state, result.started_at, result.audience,
            *(result.funnel[stage] for stage in STAGES), result.failed, result.skipped,
            result.held_out, result.spent, result.orders, result.revenue,
            result.conversion, result.roi, *lift_cells]


def campaign_report_csv(metrics: CampaignMetrics, lifts: dict[int, Lift]) -> Iterator[str]:
    """One line per mailing (with its lift where it held members out), then the campaign's
    totals and ratios."""
    rows: list[list[Any]] = [_mailing_cells(result, lifts.get(result.mailing_id))
                             for result in metrics.mailings]
    rows.append(["(campaign)", "", "", sum(r.audience for r in metrics.mailings),
                 *(sum(r.funnel[stage] for r in metrics.mailings) for stage in STAGES),
                 sum(r.failed for r in metrics.mailings),
                 sum(r.skipped for r in metrics.mailings),
                 sum(r.held_out for r in metrics.mailings), metrics.spent, metrics.orders,
                 metrics.revenue, metrics.conversion, metrics.roi, *[None] * 5])
    return csv_lines(REPORT_HEADER, rows)


CREDITS_HEADER = ["order", "member", "placed_at", "revenue", "discount", "points", "mailing",
                  "touch", "touched_at", "reversed_at"]


def campaign_credits_csv(campaign: Campaign) -> Iterator[str]:
    """Every order credited to the campaign, with the touch it was credited for; streamed in
    chunks, so a million credits never sit in memory."""
    credits = (OrderCredit.objects.filter(campaign=campaign).order_by("placed_at", "order_id")
               .values_list("order__external_id", "member__external_id", "placed_at",
                            "revenue", "discount", "points", "mailing__name", "touch",
                            "touched_at", "reversed_at"))
    return csv_lines(CREDITS_HEADER, credits.iterator(chunk_size=5000))
