"""What a mailing will cost, read before it is scheduled.

Per channel, the reachable count of the mailing's audience (what the target-group preview
counts: active, consent on the channel, an address that is not suppressed) times the
gateway's price. SMS is billed per segment, and the rendered text differs per member (a long
name can push a message into a second part, one accented letter into UCS-2), so segments are
measured on the texts of a sample of the reachable members, rendered in the same sandbox as
the dispatch, and the average scales to the whole audience. Other channels cost one price
per message.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from campaigns.rules import rules_members
from campaigns.selectors import audience_preview
from communications.models import Gateway, Mailing, Template
from communications.renderers import MEMBER_VALUE_PATHS, CompiledTemplate, member_context
from communications.services.cascade import mailing_steps
from communications.sms_encoding import sms_parts
from members.models import Channel, Member
from members.selectors import member_reachable

# Members whose SMS is rendered to measure its segments: enough to see the spread of names,
# few enough to render in a few milliseconds.
SEGMENT_SAMPLE_SIZE = 200


def mailing_cost_estimate(*, mailing: Mailing) -> dict[str, Any]:
    """The audience, reachable counts and estimated cost of a mailing, per channel.

    Returns `{"audience": {"kind", "size", "estimated", "reachable": {channel: n}},
    "channels": [{"channel", "gateway", "price_per_message", "unit", "reachable",
    "segments", "billable", "cost"}], "total_cost", "problems": {field: text}}`.
    `segments` (SMS only) is `{"sample_size", "min", "avg", "max", "encodings",
    "render_failures"}` or None when no member is reachable; `billable` is the number of
    messages (SMS: segments) priced; `estimated` says a count ran out of time and is the
    planner's estimate. What is missing (no audience, template or gateway) is named in
    `problems` and costs nothing rather than failing.
    """
    problems: dict[str, str] = {}
    members, audience = _audience_members(mailing=mailing, problems=problems)
    template = mailing.template if mailing.template_id else None
    gateway = mailing.gateway if mailing.gateway_id else None
    if template is None:
        problems["template"] = "choose a template: its channel decides what is priced"
    if gateway is None:
        problems["gateway"] = "choose a gateway: it has the price per message"
    elif template is not None and gateway.channel != template.channel:
        problems["gateway"] = (f"the gateway sends {gateway.channel}, the template is for "
                               f"{template.channel}")
    channels: list[dict[str, Any]] = []
    if template is not None:
        steps = [(template, gateway, "gateway" not in problems)]
        steps += [(step.template, step.gateway, True)
                  for step in mailing_steps(mailing=mailing)[1:]]
        reached_first = _first_reachable(members=members, audience=audience,
                                         channels=[t.channel for t, _, _ in steps])
        channels = [_channel_cost(template=step_template, gateway=step_gateway, priced=priced,
                                  members=members, reachable=reached)
                    for (step_template, step_gateway, priced), reached in zip(
                        steps, reached_first, strict=True)]
    total = sum((c["cost"] for c in channels if c["cost"] is not None), Decimal(0))
    return {"audience": audience, "channels": channels, "total_cost": total,
            "problems": problems}


def _channel_cost(*, template: Template, gateway: Gateway | None, priced: bool,
                  members: QuerySet[Member] | None, reachable: int) -> dict[str, Any]:
    channel = template.channel
    price = gateway.price_per_message if gateway is not None and priced else None
    segments = None
    billable = reachable
    if channel == Channel.SMS:
        segments = _sms_segments(template=template, members=members)
        average = segments.pop("avg_exact") if segments else Decimal(0)
        billable = int((reachable * average).to_integral_value(ROUND_HALF_UP))
    return {
        "channel": channel,
        "gateway": gateway.pk if gateway is not None else None,
        "gateway_name": gateway.name if gateway is not None else "",
        "price_per_message": price,
        "unit": "segment" if channel == Channel.SMS else "message",
        "reachable": reachable,
        "segments": segments,
        "billable": billable,
        "cost": price * billable if price is not None else None,
    }


def _first_reachable(*, members: QuerySet[Member] | None, audience: dict[str, Any],
                     channels: list[str]) -> list[int]:
    """How many members each channel of the cascade reaches first: those reachable on it and
    on none before it. Without a cascade, the audience's reachable count (the preview's own);
    with one, one more aggregate over the audience. Fallbacks after a failed message are
    not foreseen."""
    if len(channels) == 1 or members is None:
        return [audience["reachable"].get(channels[0], 0), *[0] * (len(channels) - 1)]
    counted: dict[str, Any] = {}
    earlier = Q()
    for position, channel in enumerate(channels):
        reach = member_reachable(channel=channel)
        counted[f"step_{position}"] = Count("pk", filter=reach & ~earlier if position else reach)
        earlier = earlier | reach if position else reach
    totals = members.order_by().aggregate(**counted)
    return [totals[f"step_{position}"] for position in range(len(channels))]


def mailing_audience_size(*, mailing: Mailing) -> int:
    """How many members the mailing's audience selects now (0 without an audience), as the
    estimate counts them."""
    return _audience_members(mailing=mailing, problems={})[1]["size"] or 0


def _audience_members(*, mailing: Mailing, problems: dict[str, str]
                      ) -> tuple[QuerySet[Member] | None, dict[str, Any]]:
    """The members the mailing's audience selects now, and its size and reachable counts:
    the target-group preview's own counts (under its time budget, the planner's estimate
    when they run out of it) for a target group or a static list."""
    tree: Any = None
    group_id = None
    if mailing.target_group_id is not None:
        kind, tree, group_id = "target_group", mailing.target_group.rules, mailing.target_group_id
    elif mailing.static_list_id is not None:
        kind, tree = "static_list", {"field": "static_list", "op": "member_of",
                                     "value": mailing.static_list_id}
    elif mailing.member_id is not None:
        members = Member.objects.filter(pk=mailing.member_id)
        counts = members.aggregate(size=Count("pk"), **{
            channel: Count("pk", filter=member_reachable(channel=channel))
            for channel in Channel.values})
        return members, {"kind": "member", "size": counts.pop("size"), "estimated": False,
                         "reachable": counts}
    else:
        problems["target_group"] = ("choose an audience: a target group, a static list or a "
                                    "member")
        return None, _no_audience("")
    try:
        preview = audience_preview(tree=tree, target_group_id=group_id, sample_size=0)
    except ValidationError as error:
        problems[kind] = "its rules are invalid: " + "; ".join(error.messages)
        return None, _no_audience(kind)
    return (rules_members(tree, target_group_id=group_id),
            {"kind": kind, "size": preview.size, "estimated": preview.estimated,
             "reachable": preview.reachable})


def _no_audience(kind: str) -> dict[str, Any]:
    return {"kind": kind, "size": 0, "estimated": False,
            "reachable": {channel: 0 for channel in Channel.values}}


def _sms_segments(*, template: Template, members: QuerySet[Member] | None
                  ) -> dict[str, Any] | None:
    """Segments of the SMS as rendered for up to SEGMENT_SAMPLE_SIZE reachable members, read
    in one query (the lowest ids: the ones a rule index reaches first, and as varied in their
    names as any), or None when none is reachable."""
    if members is None:
        return None
    rows = list(
        members.filter(member_reachable(channel=Channel.SMS)).order_by("pk")
        .values(*MEMBER_VALUE_PATHS)[:SEGMENT_SAMPLE_SIZE]
    )
    if not rows:
        return None
    compiled = CompiledTemplate(subject="", body=template.body)
    counts: list[int] = []
    encodings = {"gsm7": 0, "ucs2": 0}
    failures = 0
    for row in rows:
        context = member_context({path: row[key] for key, path in MEMBER_VALUE_PATHS.items()})
        try:
            text = compiled.render(context).body
        except Exception:  # noqa: BLE001  (a template failing for one member: counted, not fatal)
            failures += 1
            continue
        parts = sms_parts(text)
        counts.append(parts.segments)
        encodings[parts.encoding] += 1
    if not counts:
        return {"sample_size": len(rows), "min": 0, "avg": 0.0, "max": 0,
                "encodings": encodings, "render_failures": failures,
                "avg_exact": Decimal(0)}
    average = Decimal(sum(counts)) / len(counts)
    return {"sample_size": len(rows), "min": min(counts), "avg": float(round(average, 2)),
            "max": max(counts), "encodings": encodings, "render_failures": failures,
            "avg_exact": average}
