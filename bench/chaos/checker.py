"""The fault suite's checker: what a peer really received, joined with what Engage recorded.

Engage's promises are checked from the outside: a loopback peer logs every submission with
the Message-ID Engage gave it (`<engage.{message id}.{gateway id}@...>`, see
`BaseGateway.message_id_header`), and the checker compares that log with the mailing's message
rows and the consent ledger. It counts, for one mailing:

- audience: its messages (test sends excluded);
- sent: handed to the provider (`sent_at` set or a status past `sent`);
- unknown: in doubt (a worker died mid-send, a connection dropped mid-DATA);
- failed: ended without reaching the provider (failed, expired, cancelled, rejected unsent);
- skipped: screened out (consent, suppression, cap, holdout);
- duplicates: receipts of a message past its first, plus messages past the first to the same
  member on the same mailing and channel;
- lost: sent by the database's account but never received by the peer, plus messages still
  queued, claimed or created once the mailing has ended;
- unexpected: received after the member's opt-out on that channel was committed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.db.models import Count, Min, Q

from communications.models import Mailing, Message
from members.models import ConsentEvent

Status = Message.Status

SENT_STATUSES = frozenset({Status.SENT, Status.DELIVERED, Status.OPENED, Status.CLICKED,
                           Status.UNDELIVERED, Status.BOUNCED, Status.COMPLAINED})
FAILED_STATUSES = frozenset({Status.FAILED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED})
OPEN_STATUSES = frozenset({Status.CREATED, Status.QUEUED, Status.SENDING})
ENDED_STATES = frozenset({Mailing.State.COMPLETED, Mailing.State.CANCELLED,
                          Mailing.State.FAILED})

_MESSAGE_ID = re.compile(r"<engage\.(\d+)\.\d+@")


def smtp_log_read(path: Path | str) -> dict[int, list[float]]:
    """The SMTP peer's log (tests/peers/smtp.py `log_path`) as message id -> receipt times.

    A submission whose Message-ID is not Engage's is kept under id 0, so it is still seen.
    """
    received: dict[int, list[float]] = {}
    path = Path(path)
    if not path.exists():
        return received
    with path.open(encoding="utf-8") as log:
        for line in log:
            if not line.strip():
                continue
            entry = json.loads(line)
            match = _MESSAGE_ID.search(entry.get("message_id") or "")
            received.setdefault(int(match.group(1)) if match else 0, []).append(entry["at"])
    return received


def mailing_check(*, mailing_id: int, received: Mapping[int, Sequence[float]] | None = None,
                  channel: str | None = None) -> dict[str, int]:
    """The counts of one mailing (on `channel`, or all its channels).

    `received` maps message ids to the times (epoch seconds) the peer received them; without
    it only what the database alone can show is counted (duplicates per member, open messages
    after the end), and nothing is counted as lost for want of a receipt.
    """
    messages = Message.objects.filter(mailing_id=mailing_id, is_test=False)
    if channel is not None:
        messages = messages.filter(channel=channel)
    rows = list(messages.values_list("pk", "member_id", "channel", "status", "sent_at"))
    state = Mailing.objects.filter(pk=mailing_id).values_list("state", flat=True).first()
    ended = state in ENDED_STATES

    counts = Counter({key: 0 for key in ("audience", "sent", "unknown", "failed", "skipped",
                                         "duplicates", "lost", "unexpected")})
    counts["audience"] = len(rows)
    ids = set()
    for pk, _member, _channel, status, sent_at in rows:
        ids.add(pk)
        if status in SENT_STATUSES or (sent_at is not None and status != Status.UNKNOWN):
            counts["sent"] += 1
            if received is not None and not received.get(pk):
                counts["lost"] += 1
        elif status == Status.UNKNOWN:
            counts["unknown"] += 1
            if received is not None and received.get(pk):
                counts["unknown_received"] += 1  # in doubt, and in fact delivered
        elif status in FAILED_STATUSES:
            counts["failed"] += 1
        elif status == Status.SKIPPED:
            counts["skipped"] += 1
        elif status in OPEN_STATUSES:
            counts["open"] += 1
            if ended:
                counts["lost"] += 1
        if received is not None and received.get(pk) and (
                status in FAILED_STATUSES or status in (Status.SKIPPED, Status.QUEUED)):
            # The provider has it although Engage recorded it as not sent: a later resend
            # would duplicate it; reported beside the figures, not counted in them.
            counts["received_not_recorded_sent"] += 1

    per_member = (messages.values("member_id", "channel").annotate(n=Count("pk"))
                  .filter(n__gt=1).values_list("n", flat=True))
    counts["duplicates"] += sum(n - 1 for n in per_member)
    if received is not None:
        counts["duplicates"] += sum(len(times) - 1 for pk, times in received.items()
                                    if pk in ids and len(times) > 1)
        counts["received_unknown_id"] = sum(len(times) for pk, times in received.items()
                                            if pk not in ids)
        counts["unexpected"] = _sent_after_opt_out(rows=rows, received=received,
                                                   members=messages.values("member_id"))
    return dict(counts)


def _sent_after_opt_out(*, rows: Sequence[tuple[Any, ...]],
                        received: Mapping[int, Sequence[float]], members: Any) -> int:
    """Receipts later than the member's first marketing opt-out on that message's channel."""
    withdrawn = dict(
        ((member, channel), at) for member, channel, at in
        ConsentEvent.objects.filter(member_id__in=members, action=ConsentEvent.Action.WITHDRAW,
                                    purpose="marketing")
        .filter(Q(category__isnull=True))
        .values("member_id", "channel").annotate(at=Min("recorded_at"))
        .values_list("member_id", "channel", "at")
    )
    if not withdrawn:
        return 0
    unexpected = 0
    for pk, member, channel, _, _ in rows:
        opted_out = withdrawn.get((member, channel))
        if opted_out is None:
            continue
        cutoff = opted_out.timestamp()
        unexpected += sum(1 for at in received.get(pk, ()) if at > cutoff)
    return unexpected
