"""Inbound calls from messenger providers, each verified the provider's own way.

Viber signs every callback with `X-Viber-Content-Signature` (HMAC-SHA256 of the raw body keyed
with the account's auth token), so the signature is the credential, as in webhooks.py. A call is
answered 200 once stored: Viber resends anything else.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from communications.gateways import viber
from communications.models import Gateway
from communications.secrets import SecretsUnreadable
from communications.services.statuses import receipts_record
from members.models import (
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    Member,
    MessengerAccount,
    Purpose,
)
from members.services.consents import consent_record


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


@transaction.atomic
def viber_unsubscribe_apply(*, account_id: str, at: dt.datetime | None = None,
                            gateway_name: str = "") -> list[ConsentEvent]:
    """A Viber user unsubscribed from the program's Viber account: withdraw Viber marketing
    from the member holding that Viber id, unless already withdrawn.

    Viber has no consent source of its own in the ledger yet; unsubscribing in the messenger is
    the member's unsubscribe link there, so it is recorded as one, the gateway named.
    """
    withdrawn = Consent.objects.filter(
        member=OuterRef("pk"), channel=Channel.VIBER, purpose=Purpose.MARKETING, category=None,
        state=Consent.State.WITHDRAWN,
    )
    members = Member.objects.filter(
        messenger_accounts__network=MessengerAccount.Network.VIBER,
        messenger_accounts__account_id=account_id,
    ).filter(~Exists(withdrawn))
    return [
        consent_record(member=member, channel=Channel.VIBER, action=ConsentEvent.Action.WITHDRAW,
                       source=ConsentSource.UNSUBSCRIBE_LINK, at=at,
                       consent_text="Unsubscribed in Viber",
                       user_agent=f"Viber gateway {gateway_name}" if gateway_name else "Viber")
        for member in members
    ]


@csrf_exempt
@require_POST
def viber_callback(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """One Viber event: delivered / seen / failed become receipts on the message whose
    message_token they name; unsubscribed withdraws the member's Viber consent; others are
    acknowledged and ignored."""
    gateway = Gateway.objects.filter(pk=gateway_id, provider=viber.ViberGateway.provider).first()
    if gateway is None:
        return _problem(404, "unknown_gateway", f"no Viber gateway with id {gateway_id}")
    try:
        # Kept encrypted with the gateway's other secrets (communications/secrets.py).
        token = gateway.adapter_settings().get("auth_token")
    except SecretsUnreadable:
        # The operator can put the key back; Viber resends a callback that was not answered 200.
        return _problem(503, "secrets_unreadable",
                        "this gateway's auth_token cannot be decrypted with ENGAGE_SECRETS_KEY")
    if not isinstance(token, str) or not token:
        return _problem(403, "inbound_not_configured",
                        "this gateway has no auth_token in its settings")
    if not viber.callback_signature_valid(
            auth_token=token, body=request.body,
            signature=request.headers.get(viber.SIGNATURE_HEADER, "")):
        return _problem(403, "bad_signature",
                        f"missing or wrong {viber.SIGNATURE_HEADER} header for this body")
    try:
        callback = viber.callback_read(request.body)
    except ValueError as exc:
        return _problem(400, "bad_callback", str(exc))
    if callback.receipt is not None:
        receipts_record(gateway_id=gateway.pk, receipts=[callback.receipt])
    elif callback.unsubscribed_user_id:
        viber_unsubscribe_apply(account_id=callback.unsubscribed_user_id,
                                at=callback.occurred_at, gateway_name=gateway.name)
    return JsonResponse({"status": 0, "status_message": "ok", "event": callback.event})
