"""The audience snapshot: a part of a mailing's audience frozen into message rows by one
INSERT … SELECT, each row queued or skipped with its reason, for one channel of the mailing.
"""
from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    F,
    FilteredRelation,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import LessThan
from django.utils import timezone

from communications.models import Gateway, Mailing, Message
from communications.services.audiences import mailing_audience
from members.models import Channel, Consent, Device, Member, MessengerAccount, Suppression
from members.selectors import (
    ADDRESS_FIELDS,
    SOCIAL_NETWORKS,
    messenger_account_chosen,
    push_device_chosen,
)
from members.services.suppressions import SUPPRESSIBLE_CHANNELS

Status = Message.Status
SkipReason = Message.SkipReason

# Shared addresses are read and their messages skipped in chunks of this many.
_IDS_PER_UPDATE = 10_000

# Where the snapshot finds a member's address: a member column, for push their device, for
# Viber and social networks their messenger account.
PUSH_ADDRESS = "_device__token"
MESSENGER_ADDRESS = "_account__account_id"
MESSENGER_CHANNELS = frozenset({Channel.VIBER, Channel.SOCIAL})
SNAPSHOT_CHANNELS = frozenset({*ADDRESS_FIELDS, Channel.PUSH, *MESSENGER_CHANNELS})
# The device platforms a push provider can reach: FCM takes only Firebase registration tokens
# (given an APNs or Huawei token it answers INVALID_ARGUMENT, and the device would be
# deactivated for nothing). A provider not listed (the development sink) takes every platform.
PUSH_PLATFORMS: dict[str, tuple[str, ...]] = {
    "fcm": (Device.Platform.FCM,), "apns": (Device.Platform.APNS,),
    "hms": (Device.Platform.HMS,), "webpush": (Device.Platform.WEBPUSH,)}
# Likewise the networks a messenger provider reaches; by default every network of the channel.
MESSENGER_NETWORKS: dict[str, tuple[str, ...]] = {
    "viber": (MessengerAccount.Network.VIBER,), "telegram": (MessengerAccount.Network.TELEGRAM,)}
_CHANNEL_NETWORKS = {Channel.VIBER: (MessengerAccount.Network.VIBER,),
                     Channel.SOCIAL: SOCIAL_NETWORKS}


# A member's draws for a mailing's control group and A/B test: 10,000 buckets, each a hash of
# (mailing, member) in integer arithmetic that PostgreSQL and SQLite compute alike (SQLite has
# no md5 of its own, and Django's MOD() there goes through floats). x = (member * A + mailing
# * B + salt) mod P, then x² mod P: the square breaks up the regular steps the linear part
# alone takes through consecutive member ids, so the two draws (different salts) do not
# follow each other. Every product stays below 2**63 for member ids under 10**14.
BUCKETS = 10_000
_HASH_P, _HASH_A, _HASH_B = 2_147_483_647, 48_271, 69_621
HOLDOUT_SALT, TEST_SALT = 1_000_003, 7_368_787


def member_bucket(*, mailing_id: int, salt: int, member: str = "pk") -> ExpressionWrapper:
    """The member's bucket, 0 to BUCKETS - 1, as an expression over the member id `member`."""
    def wrap(expression: object) -> ExpressionWrapper:
        return ExpressionWrapper(expression, output_field=BigIntegerField())

    x = wrap((F(member) * _HASH_A + (mailing_id * _HASH_B + salt)) % _HASH_P)
    return wrap(((x * x) % _HASH_P) % BUCKETS)


def member_bucket_of(*, mailing_id: int, salt: int, member_id: int) -> int:
    """`member_bucket` in Python, for tests and for explaining a member's draw."""
    x = (member_id * _HASH_A + mailing_id * _HASH_B + salt) % _HASH_P
    return (x * x) % _HASH_P % BUCKETS


def snapshot_address_field(channel: str) -> str:
    """The path the snapshot reads a member's address on `channel` from."""
    if channel == Channel.PUSH:
        return PUSH_ADDRESS
    if channel in MESSENGER_CHANNELS:
        return MESSENGER_ADDRESS
    return ADDRESS_FIELDS[channel]


def duplicate_addresses_skip(*, mailing_id: int) -> int:
    """One message per address: of the queued messages sharing a channel and address, the
    lowest member id's stays queued and the others are skipped as `duplicate_address`.

    Decided over the whole audience once its last part is frozen, not by a condition in each
    part's INSERT: parts are written at once by different workers, none sees another's rows
    before they commit, so a pair split across two parts would pass both. Only queued messages
    count, so a member skipped for any other reason never takes the address from one who may
    have it. The rows are still being prepared (nothing can claim them yet), so this is part
    of the snapshot and, like its INSERT, records no status change. Runs inside the caller's
    transaction.

    One aggregate over the audience finds the shared addresses (usually none); only their few
    messages are read and updated by id. The planner sees the statistics of the table before
    the audience was written (a handful of rows): a single UPDATE ... FROM the aggregate re-ran
    it for every message (44 s for 10k), and the aggregate itself is sorted by collation
    (0.35-0.5 s for 140k messages) unless sorting is ruled out, when it is hashed (0.12 s).
    """
    queued = Message.objects.filter(mailing_id=mailing_id, status=Status.QUEUED)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
    shared = list(queued.values("channel", "address").annotate(holders=Count("pk"))
                  .filter(holders__gt=1).order_by().values_list("channel", "address"))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = on")
    duplicates: list[int] = []
    for start in range(0, len(shared), _IDS_PER_UPDATE):
        chunk = set(shared[start:start + _IDS_PER_UPDATE])
        kept: set[tuple[str, str]] = set()
        holders = (queued.filter(address__in={address for _, address in chunk})
                   .order_by("member_id").values_list("pk", "channel", "address"))
        for pk, channel, address in holders:
            if (channel, address) not in chunk:
                continue  # the same address on another channel, not shared there
            if (channel, address) in kept:
                duplicates.append(pk)
            else:
                kept.add((channel, address))
    now = timezone.now()
    for start in range(0, len(duplicates), _IDS_PER_UPDATE):
        Message.objects.filter(pk__in=duplicates[start:start + _IDS_PER_UPDATE]).update(
            status=Status.SKIPPED, skip_reason=SkipReason.DUPLICATE_ADDRESS, updated_at=now)
    return len(duplicates)


def _skip_reason(*, mailing: Mailing, channel: str, address_field: str) -> Case:
    """Why a member of the audience must not get this mailing ('' = send), first rule wins.

    Consent, suppression and double opt-in are the law here, so they are decided in the same
    statement that freezes the audience: nothing queued can be against them at snapshot time.
    The consents come in through LEFT JOINs (`_granted`, `_category_withdrawn`, annotated by
    `_audience_snapshot`) and the suppression list through an uncorrelated IN, so PostgreSQL
    hashes them once instead of probing an index per member (5.4 s -> about 1 s for 1M).
    `address_field` is a member column, or the token of the push device joined as `_device`.
    A shared address is decided later, over the whole audience (`_duplicate_addresses_skip`).
    """
    no_address = Q(**{address_field: ""}) | Q(**{f"{address_field}__isnull": True})
    whens = [
        When(~Q(status=Member.Status.ACTIVE), then=Value(SkipReason.MEMBER_INACTIVE)),
        When(no_address, then=Value(SkipReason.NO_ADDRESS)),
    ]
    if channel in SUPPRESSIBLE_CHANNELS:
        # Push tokens are not suppressed: a dead token deactivates its device instead.
        whens.append(When(Q(**{f"{address_field}__in": Suppression.objects.filter(
            channel=channel).values("address")}), then=Value(SkipReason.SUPPRESSED)))
    whens.append(When(_granted__isnull=True, then=Value(SkipReason.OPTED_OUT)))
    if mailing.category_id is not None:
        # Consent to the channel stands; the member only left this kind of mailing.
        whens.append(When(_category_withdrawn__isnull=False,
                          then=Value(SkipReason.NOT_SUBSCRIBED)))
    if channel == Channel.EMAIL and settings.ENGAGE_EMAIL_DOUBLE_OPT_IN:
        whens.append(When(email_verified_at__isnull=True, then=Value(SkipReason.UNCONFIRMED)))
    if mailing.holdout_percent:
        # Last: only a member who would otherwise be sent to joins the control group, so the
        # two groups compare like with like (both reachable, both consenting).
        whens.append(When(LessThan(member_bucket(mailing_id=mailing.pk, salt=HOLDOUT_SALT),
                                   mailing.holdout_percent * BUCKETS // 100),
                          then=Value(SkipReason.HOLDOUT)))
    return Case(*whens, default=Value(""), output_field=CharField())


def _consent_joins(*, mailing: Mailing, channel: str,
                   members: tuple[int, int]) -> dict[str, FilteredRelation]:
    """The member's granted channel consent and withdrawn category consent, as LEFT JOINs
    (at most one row each: the current state is unique per channel, purpose and category).

    The part's member range is repeated on the consents: PostgreSQL does not carry a range
    across a join, and without it every part hashed all 1.4M consent rows (0.4 s a part).
    """
    marketing = Q(consents__channel=channel, consents__purpose=Consent.Purpose.MARKETING,
                  consents__member__gte=members[0], consents__member__lte=members[1])
    joins = {"_granted": FilteredRelation("consents", condition=marketing & Q(
        consents__category=None, consents__state=Consent.State.GRANTED))}
    if mailing.category_id is not None:
        joins["_category_withdrawn"] = FilteredRelation("consents", condition=marketing & Q(
            consents__category_id=mailing.category_id,
            consents__state=Consent.State.WITHDRAWN))
    return joins


def _address_joins(*, gateway: Gateway, channel: str,
                   members: tuple[int, int]) -> dict[str, FilteredRelation]:
    """For push, the device the member's push goes to, as a LEFT JOIN `_device` (at most one
    row: the join condition is the id `push_device_chosen` picks, the most recently seen); for
    Viber and social networks likewise their messenger account, `_account`.

    A join rather than a correlated subquery in the select list: the token is read by the
    no-address and suppression rules and as the address, and PostgreSQL would run a subquery
    once per mention; the join's subquery runs once per member who has a device.
    """
    if channel in MESSENGER_CHANNELS:
        networks = MESSENGER_NETWORKS.get(gateway.provider, _CHANNEL_NETWORKS[channel])
        return {"_account": FilteredRelation("messenger_accounts", condition=Q(
            messenger_accounts__member__gte=members[0],
            messenger_accounts__member__lte=members[1],
            messenger_accounts__pk=messenger_account_chosen(networks=networks)))}
    if channel != Channel.PUSH:
        return {}
    platforms = PUSH_PLATFORMS.get(gateway.provider)
    return {"_device": FilteredRelation("devices", condition=Q(
        devices__member__gte=members[0], devices__member__lte=members[1],
        devices__pk=push_device_chosen(platforms=platforms)))}


def audience_snapshot(*, mailing: Mailing, members: tuple[int, int],
                      channel: str | None = None, gateway: Gateway | None = None,
                      among: QuerySet | None = None) -> int:
    """Write the message rows of the audience members whose ids are in the range `members`,
    on the mailing's first channel, or on `channel` through `gateway` (a cascade step) for the
    members `among` (a query of member ids, already of the audience).

    With A/B variants, the first channel's queued rows are split in the same statement: the
    test part gets a variant each, the rest is held (`held_for = ab_test`) until the winner
    is chosen (`services.experiments`)."""
    first = channel is None
    channel = channel or mailing.template.channel
    # A cascade step's members were taken from the audience by the first step; the target
    # group is not evaluated again for them.
    audience = (mailing_audience(mailing=mailing) if among is None
                else Member.objects.filter(pk__in=among))
    variants = 0
    if first and among is None:
        # Read with the mailing by the part's freezer (`variant_count`), saving a query a part.
        variants = getattr(mailing, "variant_count", None)
        if variants is None:
            variants = mailing.variants.count()
    select_sql, params = recipients_select(mailing=mailing, audience=audience, members=members,
                                           channel=channel, gateway=gateway or mailing.gateway,
                                           test_draw=bool(variants))
    now = timezone.now()
    qn = connection.ops.quote_name
    columns = recipient_columns()
    outer_params = [mailing.pk, channel, Status.QUEUED, Status.SKIPPED, now, now]
    if variants:
        split_columns, split_params = _test_split_columns(mailing=mailing, variants=variants)
        columns.update(split_columns)
        outer_params += split_params
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Message._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {', '.join(columns.values())} FROM ({select_sql}) snap",
            outer_params + list(params),
        )
        return cursor.rowcount


# Not before this, that is until released: the rest of an A/B tested audience waits for the
# winner without a time of its own.
HELD_UNTIL_RELEASED = datetime(9999, 12, 31, tzinfo=UTC)


def _test_split_columns(*, mailing: Mailing, variants: int) -> tuple[dict[str, str], list]:
    """The A/B columns of the snapshot's INSERT, after `recipient_columns`'s, and their
    parameters: a member to be sent to whose test draw is under the test share gets variant
    1 + draw mod `variants` (an even split); the others wait for the winner."""
    test = "snap._snap_reason = '' AND snap._snap_test < %s"
    rest = "snap._snap_reason = '' AND snap._snap_test >= %s"
    cut = mailing.test_percent * BUCKETS // 100
    return ({"variant": f"CASE WHEN {test} THEN 1 + snap._snap_test %% %s ELSE NULL END",
             "not_before": f"CASE WHEN {rest} THEN %s ELSE NULL END",
             "held_for": f"CASE WHEN {rest} THEN %s ELSE '' END"},
            [cut, variants, cut, connection.ops.adapt_datetimefield_value(HELD_UNTIL_RELEASED),
             cut, Message.HoldReason.AB_TEST])


def recipient_columns() -> dict[str, str]:
    """The message columns an INSERT … SELECT from `recipients_select` (aliased `snap`)
    writes, with their SQL; the placeholders take the mailing id, the channel, the queued and
    skipped statuses and the creation time twice, in that order. The skip reason is computed
    once in the inner select and the status derived from it outside, so the consent and
    suppression lookups run once per member, not twice."""
    return {
        "mailing_id": "%s", "member_id": "snap.pk", "channel": "%s",
        "address": "snap._snap_address",
        "status": "CASE WHEN snap._snap_reason = '' THEN %s ELSE %s END",
        "skip_reason": "snap._snap_reason", "attempts": "0", "provider_id": "''",
        "error_code": "''", "error": "''", "created_at": "%s", "updated_at": "%s",
    }


def recipients_select(*, mailing: Mailing, audience: QuerySet, members: tuple[int, int],
                      channel: str, gateway: Gateway, test_draw: bool = False) -> tuple[str, list]:
    """SQL selecting, for the `audience` members whose ids are in the range `members`, their
    id (`pk`), their address on `channel` (`_snap_address`) and why they must not get the
    mailing (`_snap_reason`, '' = send); with `test_draw`, also their A/B test draw
    (`_snap_test`, a bucket of `member_bucket`)."""
    address_field = snapshot_address_field(channel)
    select = (
        audience
        .filter(pk__range=members)
        .order_by()
        .annotate(**_consent_joins(mailing=mailing, channel=channel, members=members),
                  **_address_joins(gateway=gateway, channel=channel, members=members))
        .annotate(_snap_address=Coalesce(F(address_field), Value(""),
                                         output_field=CharField()),
                  _snap_reason=_skip_reason(mailing=mailing, channel=channel,
                                            address_field=address_field))
    )
    if test_draw:
        select = select.annotate(_snap_test=member_bucket(mailing_id=mailing.pk, salt=TEST_SALT))
    select = select.values("pk", "_snap_address", "_snap_reason",
                           *(["_snap_test"] if test_draw else []))
    sql, params = select.query.sql_with_params()
    return sql, list(params)
