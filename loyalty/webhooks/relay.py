"""The outbox reader: events in the log become deliveries, one row per (subscription, event).

The event log is the outbox: an event is written in the transaction of the change it describes,
so the relay sees it only once that change committed, and never one that rolled back. Each pass
takes, per active subscription, the events recorded after the subscription's position in one
`INSERT … SELECT … ON CONFLICT DO NOTHING`, then moves the position.

The position never passes an event that is still to commit: it moves to
`loyalty.event_log.event_log_horizon()` (see there). Events seen twice on the way are absorbed
by the unique (subscription, event) constraint.

After commit, the ingest calls `events_relay_nudge()` so deliveries start at once; the beat
schedule runs the same pass every ENGAGE_WEBHOOK_RELAY_TICK seconds, so a lost nudge delays an
event by a tick and loses nothing.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.utils import timezone

from loyalty.event_log import event_log_horizon
from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)


def events_relay_nudge() -> None:
    """Ask a worker to relay now (after an event's transaction committed). Never raises: the
    beat schedule relays anyway, so a broker hiccup only delays the event."""
    try:
        from loyalty.webhooks.tasks import webhooks_relay

        # No publish retries: a caller's request must not wait out a broker outage.
        webhooks_relay.apply_async(retry=False)
    except Exception:  # noqa: BLE001
        logger.warning("webhook relay nudge not sent; the scheduled relay will pick it up",
                       exc_info=True)


def _subscription_relay(subscription: WebhookSubscription) -> int:
    from loyalty.models import Event

    table = WebhookDelivery._meta.db_table
    event_table = Event._meta.db_table
    types = list(subscription.event_types)
    type_filter = f"AND e.type IN ({','.join(['%s'] * len(types))})" if types else ""
    now = timezone.now()
    with connection.cursor() as cursor:
        # Ordered by the log so a member's deliveries get ids in the order of their events.
        cursor.execute(
            f"INSERT INTO {table} (subscription_id, event_id, member_id, status, attempts,"
            f" next_attempt_at, last_error, created_at)"
            f" SELECT %s, e.id, e.member_id, 'pending', 0, %s, '', %s"
            f" FROM {event_table} e WHERE e.recorded_at > %s {type_filter}"
            f" ORDER BY e.recorded_at, e.id"
            f" ON CONFLICT (subscription_id, event_id) DO NOTHING",
            [subscription.pk, now, now, subscription.relayed_until, *types])
        return max(cursor.rowcount, 0)


def webhooks_relay_pass() -> int:
    """One pass of the relay over every active subscription; the deliveries it created."""
    created = 0
    horizon = event_log_horizon()
    ids = list(WebhookSubscription.objects.filter(active=True).values_list("pk", flat=True))
    for pk in ids:
        with transaction.atomic():
            # Another worker relaying the same subscription just now is left to it.
            subscription = (WebhookSubscription.objects.select_for_update(skip_locked=True)
                            .filter(pk=pk, active=True).first())
            if subscription is None:
                continue
            created += _subscription_relay(subscription)
            if horizon > subscription.relayed_until:
                WebhookSubscription.objects.filter(pk=pk).update(relayed_until=horizon)
    return created
