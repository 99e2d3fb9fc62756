"""Delivery reports from the HTTP SMS providers: Twilio's status callbacks and the generic
provider's receipts. Each is authenticated the provider's way, read by its gateway module and
stored with `receipts_record` (applied in bulk by a worker).

Accepted for an inactive gateway too: its messages sent before it was switched off still report.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from communications.gateways import http_sms, twilio
from communications.models import Gateway
from communications.secrets import SecretsUnreadable
from communications.services.statuses import receipts_record


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _gateway_settings(gateway_id: int, provider: str
                      ) -> tuple[Gateway, dict[str, Any]] | JsonResponse:
    """The gateway the call names with its settings, secrets included (the auth token or
    inbound secret that authenticates the call); otherwise the error response to send."""
    gateway = Gateway.objects.filter(pk=gateway_id, provider=provider).first()
    if gateway is None:
        return _problem(404, "unknown_gateway", f"no {provider} gateway with id {gateway_id}")
    try:
        return gateway, gateway.adapter_settings()
    except SecretsUnreadable as exc:
        # The operator can put the old key back; the provider's retry then gets through.
        return _problem(503, "secrets_unreadable", str(exc))


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, gateway_id: int) -> HttpResponse:
    """A Twilio status callback (form fields MessageSid, MessageStatus, ErrorCode, ...), signed
    with the gateway's auth token in X-Twilio-Signature. 204 once stored; 403 unsigned."""
    found = _gateway_settings(gateway_id, "twilio")
    if isinstance(found, JsonResponse):
        return found
    gateway, settings = found
    token = settings.get("auth_token")
    urls = [twilio.status_callback_url(gateway_id=gateway.pk, settings=settings),
            # Behind a proxy that keeps the public host and scheme this is the same URL.
            request.build_absolute_uri()]
    if not isinstance(token, str) or not twilio.status_callback_signed(
            auth_token=token, urls=urls, params=request.POST,
            signature=request.headers.get(twilio.SIGNATURE_HEADER, "")):
        return _problem(403, "bad_signature",
                        f"missing or wrong {twilio.SIGNATURE_HEADER} for this URL and body")
    try:
        receipt = twilio.status_callback_receipt(request.POST.dict(),
                                                 received_at=timezone.now())
    except ValueError as exc:
        return _problem(400, "bad_callback", str(exc))
    if receipt is not None:
        receipts_record(gateway_id=gateway.pk, receipts=[receipt])
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def http_sms_receipts(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """Delivery reports of a generic HTTP SMS provider, read as its gateway's settings say
    (communications.gateways.http_sms). A call with any unreadable report is refused whole
    (400, errors by index), so the provider's retry never half-applies."""
    found = _gateway_settings(gateway_id, "http_sms")
    if isinstance(found, JsonResponse):
        return found
    gateway, settings = found
    if not settings.get("inbound_secret"):
        return _problem(403, "inbound_not_configured",
                        "this gateway has no inbound_secret in its settings")
    header = settings.get("signature_header") or http_sms.DEFAULT_SIGNATURE_HEADER
    if not http_sms.receipt_signature_valid(settings=settings, body=request.body,
                                            header=request.headers.get(header, "")):
        return _problem(403, "bad_signature", f"missing or wrong {header} header for this body")
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _problem(400, "bad_body", f"not valid JSON: {exc}")
    else:
        body = request.POST.dict()
    try:
        receipts, ignored = http_sms.receipts_read(
            settings=settings, items=http_sms.receipt_items(settings=settings, body=body),
            received_at=timezone.now())
    except http_sms.ReceiptsUnreadable as exc:
        return JsonResponse({"receipts": exc.errors}, status=400)
    receipts_record(gateway_id=gateway.pk, receipts=receipts)
    # 200, not 202: several aggregators resend a report on anything but 200.
    return JsonResponse({"accepted": len(receipts), "ignored": ignored})
