"""What the edge scenarios start from: members and sent messages written in bulk, each run under
a prefix of its own so that a scenario never reads another's rows (nor a seeded bench's)."""

from __future__ import annotations

import random
import uuid

from django.db import connection
from django.utils import timezone

from communications.models import Gateway, Mailing, Message
from members.models import Member

MEMBERS_PER_STATEMENT = 5_000


def run_tag(scenario: str) -> str:
    """A prefix unique to this run of `scenario`, for names, external ids and provider ids."""
    return f"chaos-{scenario}-{uuid.uuid4().hex[:8]}"


def members_create(*, tag: str, count: int, timezones: list[str] | None = None) -> list[int]:
    """`count` active members (email and phone set), in `timezones` round robin; their ids."""
    zones = timezones or ["UTC"]
    qn = connection.ops.quote_name
    table = qn(Member._meta.db_table)
    now = timezone.now()
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, count, MEMBERS_PER_STATEMENT):
            numbers = list(range(start, min(count, start + MEMBERS_PER_STATEMENT)))
            cursor.execute(
                f"INSERT INTO {table} (external_id, email, phone, timezone, language, status, "
                f"custom_attributes, created_at, updated_at) "
                f"SELECT %s || '-' || n, %s || '-' || n || '@members.example.com', "
                f"'+49151' || lpad(((%s + n) %% 100000000)::text, 8, '0'), "
                f"(%s::text[])[1 + n %% %s], 'en', "
                f"'active', '{{}}'::jsonb, %s, %s FROM unnest(%s::int[]) AS n RETURNING id",
                [tag, tag, random.randrange(100_000_000), zones, len(zones), now, now,
                 numbers])
            ids += [row[0] for row in cursor.fetchall()]
    return sorted(ids)


def sent_messages_create(*, tag: str, gateway: Gateway, member_ids: list[int],
                         channel: str) -> tuple[Mailing, dict[str, int]]:
    """A completed mailing with one `sent` message per member through `gateway`; the mailing
    and its messages' ids by provider id (`<tag>-<member id>`)."""
    now = timezone.now()
    mailing = Mailing.objects.create(name=tag, gateway=gateway, state=Mailing.State.COMPLETED,
                                     started_at=now, completed_at=now)
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Message._meta.db_table)} (mailing_id, member_id, channel, address, "
            f"status, skip_reason, attempts, gateway_id, provider_id, error_code, error, "
            f"created_at, claimed_at, sent_at, updated_at) "
            f"SELECT %s, id, %s, 'address-' || id, %s, '', 1, %s, %s || '-' || id, '', '', "
            f"%s, %s, %s, %s FROM unnest(%s::bigint[]) AS id RETURNING id, provider_id",
            [mailing.pk, channel, Message.Status.SENT, gateway.pk, tag, now, now, now, now,
             member_ids])
        by_provider_id = {provider_id: pk for pk, provider_id in cursor.fetchall()}
    return mailing, by_provider_id


def consents_grant(*, member_ids: list[int], channel: str) -> None:
    """Marketing consent on `channel` for these members, written in bulk (as an import does)."""
    from members.models import Consent

    now = timezone.now()
    Consent.objects.bulk_create(
        [Consent(member_id=pk, channel=channel, purpose=Consent.Purpose.MARKETING,
                 state=Consent.State.GRANTED, source="import", recorded_at=now)
         for pk in member_ids], batch_size=MEMBERS_PER_STATEMENT)


def queued_messages_create(*, mailing: Mailing, member_ids: list[int], channel: str,
                           addresses: dict[int, str]) -> int:
    """The mailing's frozen audience: one queued message per member, as the snapshot writes
    them (one INSERT ... SELECT)."""
    now = timezone.now()
    qn = connection.ops.quote_name
    ids = list(member_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Message._meta.db_table)} (mailing_id, member_id, channel, address, "
            f"status, skip_reason, attempts, provider_id, error_code, error, created_at, "
            f"updated_at) SELECT %s, m.id, %s, m.address, %s, '', 0, '', '', '', %s, %s "
            f"FROM unnest(%s::bigint[], %s::text[]) AS m(id, address)",
            [mailing.pk, channel, Message.Status.QUEUED, now, now, ids,
             [addresses[pk] for pk in ids]])
        return cursor.rowcount
