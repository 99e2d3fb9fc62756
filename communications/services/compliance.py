"""Compliance at send time: what a claimed batch may send now, and what ends when a mailing's
message lifetime runs out.

The audience snapshot already decided consent, suppression and address once; a mailing takes
minutes to days, so a claimed batch is screened again, in a constant number of queries
whatever its size (`batch_screen`), first rule wins:

1. consent, as it is now: a member blocked or erased since (`inactive`), an address suppressed
   since (`suppressed`), a channel consent withdrawn since (`opted_out`), a withdrawal from the
   mailing's category (`not_subscribed_to_category`): skipped at once;
2. frequency caps across all mailings (`FrequencyCap`): skipped `frequency_cap`, or, when the
   mailing defers, held until the member's next allowed slot;
3. quiet hours in the member's time zone: the program's for the channel (`QuietHours`) and
   the member's own on every channel (`Member.quiet_hours_start` / `quiet_hours_end`, set in
   their preferences): held until the later of the windows they are in ends.

A held message stays `queued` with `not_before` (claims pass it over until then) and
`held_for` (what it ends as if the lifetime runs out first: `quiet_hours_expired` for either
kind of quiet hours, or `frequency_cap`). A hold that could only end after the lifetime is
skipped at once.

Caps and concurrency: a member may be in several mailings sending at once. The claim counts,
per member, the marketing messages already sent or being sent (claimed by another batch) and
marks its own as being sent in the same transaction, under a transaction-level advisory lock
per member, taken in member-id order (`_members_lock`): a second claim for the same member
waits for the first to commit and then counts its messages. So a member never gets more than
the cap, at the price of claims that share members taking turns for milliseconds.

Priority (`Mailing.priority`) decides only who gets a member's last slots: a claim also counts,
as if sent now, the due queued messages of higher-priority mailings that are sending to the same
member, so a lower-priority mailing defers or skips and leaves the slot to them. It does not
order the sending itself: batches of concurrent mailings share the workers in the order their
tasks were enqueued. Held messages of a higher-priority mailing reserve nothing until they are
due; a reserved message that is later skipped (its member opted out) leaves its slot unused.
"""

from __future__ import annotations

import functools
import logging
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, Exists, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from communications.models import (
    FrequencyCap,
    Mailing,
    Message,
    MessageStatusChange,
    QuietHours,
)
from communications.services.statuses import StatusChange, changes_record, message_statuses_apply
from members.models import Consent, Member, Purpose, Suppression

logger = logging.getLogger(__name__)

Status = Message.Status
SkipReason = Message.SkipReason
HoldReason = Message.HoldReason
Source = MessageStatusChange.Source
State = Mailing.State

# Statuses of a message that went out, or may have: they count against a cap. `sent_at` marks
# the rest of them (sent, delivered, opened, bounced, expired after sending...).
_IN_FLIGHT = (Status.SENDING, Status.UNKNOWN)
# Advisory locks are (namespace, key) pairs shared by the whole cluster: ours say "member".
MEMBER_LOCK_NAMESPACE = 0x454E47  # "ENG"
_INT4_MAX = 2_147_483_647
# Expiry works in chunks so that a huge mailing's sweep holds no lock for long, and a single
# call has a bound; what is left waits for the next tick.
EXPIRE_CHUNK = 5_000
EXPIRE_PER_CALL = 50_000


# --- the claim's screening --------------------------------------------------------------------

@dataclass(frozen=True)
class MailingRules:
    """What the screening needs to know about the mailing a batch belongs to."""

    mailing_id: int
    channel: str
    category_id: int | None
    priority: int
    defer_capped: bool
    lifetime_ends_at: datetime | None


@dataclass
class Screening:
    """A claimed batch, decided: `send` ids, `skipped` ids by reason, `held` (id, not_before,
    held_for) rows."""

    send: list[int] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    held: list[tuple[int, datetime, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {}
        if self.skipped:
            counts["skipped"] = sum(len(ids) for ids in self.skipped.values())
        if self.held:
            counts["held"] = len(self.held)
        return counts

    def changes(self, *, now: datetime) -> list[StatusChange]:
        """The history rows of what the screening changed."""
        changes = [StatusChange(pk, Status.SKIPPED, now, reason, _SKIP_DETAIL[reason])
                   for reason, ids in self.skipped.items() for pk in ids]
        changes += [StatusChange(pk, Status.QUEUED, now, held_for,
                                 f"held until {not_before.isoformat()}: {_HOLD_DETAIL[held_for]}")
                    for pk, not_before, held_for in self.held]
        return changes


_SKIP_DETAIL = {
    SkipReason.MEMBER_INACTIVE: "member blocked or erased after the audience was frozen",
    SkipReason.SUPPRESSED: "address suppressed after the audience was frozen",
    SkipReason.OPTED_OUT: "channel consent withdrawn after the audience was frozen",
    SkipReason.NOT_SUBSCRIBED: "withdrew from the mailing's category after the audience was "
                               "frozen",
    SkipReason.FREQUENCY_CAP: "member at a frequency cap",
    SkipReason.QUIET_HOURS_EXPIRED: "quiet hours last past the mailing's message lifetime",
}
_HOLD_DETAIL = {
    HoldReason.QUIET_HOURS: "quiet hours in the member's time zone",
    HoldReason.MEMBER_QUIET_HOURS: "the member's own quiet hours, in their time zone",
    HoldReason.FREQUENCY_CAP: "member at a frequency cap, deferred to the next allowed slot",
}


def batch_screen(*, rules: MailingRules, ids: Sequence[int], now: datetime) -> Screening:
    """Decide what a claimed batch may send now (see the module docstring); reads only.

    Runs inside the claim's transaction, after the batch's rows are locked: the member locks
    it takes for caps are held until that transaction commits the claim. Six queries at most,
    whatever the batch's size: the member's own quiet hours come with their consent row.
    """
    screening = Screening()
    rows = _consent_rows(rules=rules, ids=ids)
    # (message id, member id, time zone, own quiet hours start, end)
    candidates: list[tuple[int, int, str, time | None, time | None]] = []
    for pk, member_id, zone, own_start, own_end, reason in rows:
        if reason:
            screening.skipped[reason].append(pk)
        else:
            candidates.append((pk, member_id, zone, own_start, own_end))
    caps = [cap for cap in FrequencyCap.objects.filter(is_active=True)
            if cap.channel in ("", rules.channel)]
    capped = _capped_until(rules=rules, caps=caps, members=[c[1] for c in candidates], now=now)
    quiet = QuietHours.objects.filter(channel=rules.channel, is_active=True).first()
    ends = rules.lifetime_ends_at
    for pk, member_id, zone, own_start, own_end in candidates:
        if member_id in capped:
            slot = capped[member_id]
            if rules.defer_capped and (ends is None or slot < ends):
                screening.held.append((pk, slot, HoldReason.FREQUENCY_CAP))
            else:
                screening.skipped[SkipReason.FREQUENCY_CAP].append(pk)
            continue
        holds = []
        if quiet is not None:
            holds.append((quiet_window_opens(quiet=quiet, zone=zone, now=now),
                          HoldReason.QUIET_HOURS))
        if own_start is not None and own_end is not None:
            holds.append((window_opens(starts_at=own_start, ends_at=own_end, zone=zone,
                                       now=now), HoldReason.MEMBER_QUIET_HOURS))
        # Held until the later window ends: the claim then would only hold it again.
        opens, held_for = max(((at, why) for at, why in holds if at is not None),
                              default=(None, ""))
        if opens is None:
            screening.send.append(pk)
        elif ends is not None and opens >= ends:
            screening.skipped[SkipReason.QUIET_HOURS_EXPIRED].append(pk)
        else:
            screening.held.append((pk, opens, held_for))
    return screening


def _consent_rows(*, rules: MailingRules, ids: Sequence[int]
                  ) -> list[tuple[int, int, str, time | None, time | None, str]]:
    """(message id, member id, member time zone, the member's own quiet hours start and end,
    skip reason or '') for the batch, in one query.

    The same rules as the snapshot's `_skip_reason`, read now: each is an index probe per row
    (consent by its unique (member, channel, purpose) index, suppression by (channel,
    address)), cheap at a batch's size.
    """
    marketing = Consent.objects.filter(member=OuterRef("member_id"), channel=rules.channel,
                                       purpose=Purpose.MARKETING)
    whens = [
        When(~Q(member__status=Member.Status.ACTIVE), then=Value(SkipReason.MEMBER_INACTIVE)),
        When(Exists(Suppression.objects.filter(channel=rules.channel,
                                               address=OuterRef("address"))),
             then=Value(SkipReason.SUPPRESSED)),
        When(~Exists(marketing.filter(category=None, state=Consent.State.GRANTED)),
             then=Value(SkipReason.OPTED_OUT)),
    ]
    if rules.category_id is not None:
        whens.append(When(Exists(marketing.filter(category_id=rules.category_id,
                                                  state=Consent.State.WITHDRAWN)),
                          then=Value(SkipReason.NOT_SUBSCRIBED)))
    return list(
        Message.objects.filter(pk__in=ids).order_by("pk")
        .annotate(_reason=Case(*whens, default=Value(""), output_field=CharField()))
        .values_list("pk", "member_id", "member__timezone", "member__quiet_hours_start",
                     "member__quiet_hours_end", "_reason")
    )


def _capped_until(*, rules: MailingRules, caps: Sequence[FrequencyCap], members: Sequence[int],
                  now: datetime) -> dict[int, datetime]:
    """Members of the batch at a cap, each with the moment every cap would let them through.

    What counts: their marketing messages sent or being sent within each cap's period
    (`sent_at`, or `claimed_at` while in flight), plus the due queued messages of
    higher-priority mailings that are sending (they keep the slot they will take; counted as
    sent now). A member over a cap with k counted messages gets a slot when the (k - max + 1)
    oldest have left the window.
    """
    if not caps or not members:
        return {}
    members = sorted(set(members))
    _members_lock(members)
    longest = max(cap.period for cap in caps)
    counted = (
        Message.objects.filter(member_id__in=members, mailing__isnull=False, is_test=False)
        .filter(Q(sent_at__isnull=False) | Q(status__in=_IN_FLIGHT))
        .annotate(_at=Coalesce("sent_at", "claimed_at"))
        .filter(_at__gt=now - longest)
    )
    reserved = (
        Message.objects.filter(member_id__in=members, status=Status.QUEUED, is_test=False,
                               mailing__state=State.SENDING,
                               mailing__priority__gt=rules.priority)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    )
    if all(cap.channel for cap in caps):
        counted = counted.filter(channel=rules.channel)
        reserved = reserved.filter(channel=rules.channel)
    stamps: dict[int, list[tuple[str, datetime]]] = defaultdict(list)
    for member_id, channel, at in counted.values_list("member_id", "channel", "_at"):
        stamps[member_id].append((channel, at))
    for member_id, channel in reserved.values_list("member_id", "channel"):
        stamps[member_id].append((channel, now))
    capped: dict[int, datetime] = {}
    for member_id, sent in stamps.items():
        for cap in caps:
            times = sorted(at for channel, at in sent
                           if (not cap.channel or channel == cap.channel)
                           and at > now - cap.period)
            if len(times) >= cap.max_messages:
                frees_at = times[len(times) - cap.max_messages] + cap.period
                capped[member_id] = max(frees_at, capped.get(member_id, frees_at))
    return capped


def _members_lock(members: Sequence[int]) -> None:
    """Serialize cap decisions per member until this transaction ends (see the module
    docstring). Sorted ids, taken in array order by one statement: two claims never wait on
    each other in a cycle. SQLite (the embedded default) has one worker and no such locks."""
    if connection.vendor != "postgresql" or not members:
        return
    with connection.cursor() as cursor:
        # Ids past int4 share a lock with another member: more waiting, never less safety.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, (m %% %s)::int4) FROM unnest(%s::bigint[]) AS m",
            [MEMBER_LOCK_NAMESPACE, _INT4_MAX, list(members)],
        )


# --- quiet hours ------------------------------------------------------------------------------

def member_zone(name: str) -> zoneinfo.ZoneInfo:
    """The member's time zone, or the program's (TIME_ZONE) when theirs is blank or unknown."""
    return _zone(name) or zoneinfo.ZoneInfo(settings.TIME_ZONE)


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def quiet_window_opens(*, quiet: QuietHours, zone: str, now: datetime) -> datetime | None:
    """When the program's quiet window the member is in now ends (aware, UTC), or None when
    they are not in one."""
    return window_opens(starts_at=quiet.starts_at, ends_at=quiet.ends_at, zone=zone, now=now)


def window_opens(*, starts_at: time, ends_at: time, zone: str,
                 now: datetime) -> datetime | None:
    """When a daily quiet window from `starts_at` to `ends_at` in the member's time zone ends
    (aware, UTC), if they are in it now; None otherwise. `starts_at` after `ends_at` means the
    window wraps past midnight."""
    tz = member_zone(zone)
    local = now.astimezone(tz)
    clock, start, end = local.time(), starts_at, ends_at
    wraps = start > end
    inside = (clock >= start or clock < end) if wraps else (start <= clock < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if wraps and clock >= start else local.date()
    return _local_moment(day, end, tz)


def _local_moment(day: date, clock: time, tz: zoneinfo.ZoneInfo) -> datetime:
    # A wall time inside a DST gap (02:30 on the spring change) reads as the offset before the
    # change, which lands just after the gap: still the first minute the window is open.
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


# --- message lifetime -------------------------------------------------------------------------

def mailing_lifetime_ends_at(*, started_at: datetime | None,
                             lifetime: timedelta | None) -> datetime | None:
    if started_at is None or lifetime is None:
        return None
    return started_at + lifetime


def messages_expire(*, now: datetime | None = None,
                    mailing_id: int | None = None) -> dict[str, int]:
    """End what a mailing's message lifetime left undone; run by the scheduler tick.

    Queued messages (held ones included) past `started_at + message_lifetime` end `expired`,
    or `skipped` with `quiet_hours_expired` / `frequency_cap` when quiet hours or a cap held
    them; sent messages not reported delivered by then end `expired`. Every change goes
    into the messages' history. A sending mailing with nothing left is completed. At most
    `EXPIRE_PER_CALL` messages per call; the next tick takes the rest.
    """
    from communications.services.dispatch import mailing_complete_if_done

    now = now or timezone.now()
    mailings = Mailing.objects.filter(message_lifetime__isnull=False, started_at__isnull=False,
                                      messages_expired_at__isnull=True)
    if mailing_id is not None:
        mailings = mailings.filter(pk=mailing_id)
    ended = [(pk, state) for pk, state, started_at, lifetime
             in mailings.values_list("pk", "state", "started_at", "message_lifetime")
             if started_at + lifetime <= now]
    totals: Counter[str] = Counter()
    left = EXPIRE_PER_CALL
    for pk, state in ended:
        taken, queued_done = _queued_expire(mailing_id=pk, now=now, totals=totals, budget=left)
        left -= taken
        taken, sent_done = _sent_expire(mailing_id=pk, now=now, totals=totals, budget=left)
        left -= taken
        if state == State.SENDING and mailing_complete_if_done(mailing_id=pk):
            state = State.COMPLETED
        # A mailing that can no longer send is swept for the last time once nothing is queued,
        # sent-but-undelivered or still being sent (a batch in flight turns sent later).
        if (queued_done and sent_done and state in (State.COMPLETED, State.CANCELLED,
                                                    State.FAILED)
                and not Message.objects.filter(mailing_id=pk, status=Status.SENDING).exists()):
            Mailing.objects.filter(pk=pk).update(messages_expired_at=now)
        if left <= 0:
            break
    return {"expired": totals["expired"], "skipped": totals["skipped"],
            "sent_expired": totals["sent_expired"]}


# What a queued message ends as when the lifetime runs out, by what held it.
_LIFETIME_ENDINGS = {
    "": (Status.EXPIRED, "", "not sent within the mailing's message lifetime"),
    HoldReason.QUIET_HOURS: (Status.SKIPPED, SkipReason.QUIET_HOURS_EXPIRED,
                             "held by quiet hours until the mailing's message lifetime ended"),
    HoldReason.MEMBER_QUIET_HOURS: (Status.SKIPPED, SkipReason.QUIET_HOURS_EXPIRED,
                                    "held by the member's own quiet hours until the mailing's "
                                    "message lifetime ended"),
    HoldReason.FREQUENCY_CAP: (Status.SKIPPED, SkipReason.FREQUENCY_CAP,
                               "deferred by a frequency cap until the mailing's message "
                               "lifetime ended"),
}


def _queued_expire(*, mailing_id: int, now: datetime, totals: Counter[str],
                   budget: int) -> tuple[int, bool]:
    """Queued messages of an ended mailing, in chunks: (how many ended, none left)."""
    taken = 0
    while taken < budget:
        with transaction.atomic():
            # Rows a claim holds are passed over: that batch is being sent.
            rows = list(
                Message.objects.select_for_update(skip_locked=True)
                .filter(mailing_id=mailing_id, status=Status.QUEUED)
                .order_by("pk").values_list("pk", "held_for")[:min(EXPIRE_CHUNK, budget - taken)]
            )
            if not rows:
                return taken, True
            by_held: dict[str, list[int]] = defaultdict(list)
            for pk, held_for in rows:
                by_held[held_for if held_for in _LIFETIME_ENDINGS else ""].append(pk)
            changes: list[StatusChange] = []
            for held_for, ids in by_held.items():
                status, reason, detail = _LIFETIME_ENDINGS[held_for]
                Message.objects.filter(pk__in=ids, status=Status.QUEUED).update(
                    status=status, skip_reason=reason, updated_at=now)
                changes += [StatusChange(pk, status, now, reason or "lifetime", detail)
                            for pk in ids]
                totals["skipped" if reason else "expired"] += len(ids)
            changes_record(changes=changes, source=Source.SWEEPER, recorded_at=now)
        taken += len(rows)
    return taken, False


def _sent_expire(*, mailing_id: int, now: datetime, totals: Counter[str],
                 budget: int) -> tuple[int, bool]:
    """Sent messages of an ended mailing never reported delivered: (how many, none left)."""
    taken = 0
    while taken < budget:
        ids = list(Message.objects.filter(mailing_id=mailing_id, status=Status.SENT,
                                          is_test=False)
                   .order_by("pk").values_list("pk", flat=True)[:min(EXPIRE_CHUNK, budget - taken)])
        if not ids:
            return taken, True
        # Forward-only: one reported delivered meanwhile stays delivered.
        totals["sent_expired"] += message_statuses_apply(
            changes=[StatusChange(pk, Status.EXPIRED, now, "lifetime",
                                  "not reported delivered within the mailing's message "
                                  "lifetime") for pk in ids],
            source=Source.SWEEPER)
        taken += len(ids)
    return taken, False
