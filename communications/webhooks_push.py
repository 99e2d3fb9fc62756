"""Receipts from the push providers, each authenticated the provider's way, read by its gateway
module and stored with `receipts_record` (applied in bulk by a worker).

Huawei Push Kit: the receipt URL set in AppGallery Connect is `hooks/hms/<gateway id>/receipts`,
with a callback user name and key, which the gateway holds as `callback_user` and
`inbound_secret`. Push Kit then signs each call in X-HUAWEI-CALLBACK-ID
(communications.gateways.hms.callback_authentic): without that header the call is refused 401,
with a wrong or stale one 403, and a gateway without both settings takes no receipts at all
(403), since an unauthenticated receipt could mark any message delivered.

Accepted for an inactive gateway too: its messages sent before it was switched off still report.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from communications.gateways import hms
from communications.models import Gateway
from communications.secrets import SecretsUnreadable
from communications.services.statuses import receipts_record


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


@csrf_exempt
@require_POST
def hms_receipts(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """One Push Kit receipt call (up to 100 statuses), refused whole when a status cannot be
    read, so Push Kit's resend never half-applies; 200 once stored."""
    gateway = Gateway.objects.filter(pk=gateway_id, provider=hms.HmsGateway.provider).first()
    if gateway is None:
        return _problem(404, "unknown_gateway", f"no Push Kit gateway with id {gateway_id}")
    try:
        settings = gateway.adapter_settings()
    except SecretsUnreadable as exc:
        # The operator can put the old key back; Push Kit's resend then gets through.
        return _problem(503, "secrets_unreadable", str(exc))
    if not settings.get("callback_user") or not settings.get("inbound_secret"):
        return _problem(403, "inbound_not_configured",
                        "this gateway has no callback_user and inbound_secret (the callback "
                        "user name and key of the receipt settings) to check receipts with")
    header = request.headers.get(hms.CALLBACK_HEADER, "")
    if not header:
        return _problem(401, "unauthenticated", f"the {hms.CALLBACK_HEADER} header is missing")
    if not hms.callback_authentic(settings=settings, header=header):
        return _problem(403, "bad_signature",
                        f"{hms.CALLBACK_HEADER} is not signed with this gateway's callback user "
                        f"name and key, or is over {hms.CALLBACK_MAX_SKEW_S} s old")
    try:
        receipts, ignored = hms.receipts_read(request.body, app_id=str(settings.get("app_id")),
                                              received_at=timezone.now())
    except (ValueError, UnicodeDecodeError) as exc:
        return _problem(400, "bad_receipt", str(exc))
    receipts_record(gateway_id=gateway.pk, receipts=receipts)
    # Push Kit's receipt API answer, with what Engage made of the call.
    return JsonResponse({"errno": "0", "errmsg": "success", "accepted": len(receipts),
                         "ignored": ignored})
