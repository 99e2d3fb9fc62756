"""Inbound calls from providers, each authenticated by an HMAC over the raw request body.

Providers cannot hold a session or a CSRF token, so the signature is the credential: the
gateway's `settings["inbound_secret"]` is shared with the provider, who signs every call with
`X-Engage-Signature: sha256=<hex HMAC-SHA256 of the body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from communications.gateways import Receipt
from communications.models import Gateway
from communications.services.statuses import RECEIPT_STATUSES, receipts_record
from members.models import Channel
from members.services.keywords import sms_inbound_apply

SIGNATURE_HEADER = "X-Engage-Signature"
SIGNATURE_PREFIX = "sha256="


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The header value a provider must send for `body` (also what tests and docs sign with)."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _signature_valid(*, secret: str, body: bytes, header: str) -> bool:
    expected = webhook_signature(secret=secret, body=body)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def _payload(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError({"body": f"not valid JSON: {exc}"}) from exc
        if not isinstance(data, dict):
            raise ValidationError({"body": "must be a JSON object"})
        return data
    return request.POST.dict()


def _authenticated_gateway(request: HttpRequest, gateway_id: int,
                           channel: str | None = None) -> Gateway | JsonResponse:
    """The gateway the call names, if the call is signed with its inbound secret; otherwise
    the error response to send."""
    gateways = Gateway.objects.filter(pk=gateway_id)
    if channel is not None:
        gateways = gateways.filter(channel=channel)
    gateway = gateways.first()
    if gateway is None:
        what = f"{channel.upper()} gateway" if channel else "gateway"
        return _problem(404, "unknown_gateway", f"no {what} with id {gateway_id}")
    # Kept encrypted with the gateway's other secrets (communications/secrets.py).
    secret = gateway.adapter_settings().get("inbound_secret")
    if not secret or not isinstance(secret, str):
        return _problem(403, "inbound_not_configured",
                        "this gateway has no inbound_secret in its settings")
    if not _signature_valid(secret=secret, body=request.body,
                            header=request.headers.get(SIGNATURE_HEADER, "")):
        return _problem(403, "bad_signature",
                        f"missing or wrong {SIGNATURE_HEADER} header for this body")
    return gateway


@csrf_exempt
@require_POST
def sms_inbound(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """An SMS a member sent to us, relayed by a generic HTTP provider: `from` and `text`.

    Accepted for an inactive gateway too: a STOP must be honoured even after the program
    stopped sending through that provider.
    """
    gateway = _authenticated_gateway(request, gateway_id, Channel.SMS)
    if isinstance(gateway, JsonResponse):
        return gateway
    try:
        payload = _payload(request)
    except ValidationError as exc:
        return JsonResponse(exc.message_dict, status=400)
    errors = {}
    if not isinstance(payload.get("from"), str) or not payload["from"].strip():
        errors["from"] = ["the sender's phone number is required"]
    if not isinstance(payload.get("text"), str):
        errors["text"] = ["the message text is required"]
    if errors:
        return JsonResponse(errors, status=400)
    try:
        events = sms_inbound_apply(phone=payload["from"], text=payload["text"],
                                   gateway_name=gateway.name)
    except ValidationError as exc:
        # The service speaks of the member's `phone`; the provider sent it as `from`.
        return JsonResponse({"from" if field == "phone" else field: texts
                             for field, texts in exc.message_dict.items()}, status=400)
    return JsonResponse({"withdrawn": len(events)})


RECEIPTS_PER_CALL = 10_000


def _receipt_read(item: Any) -> tuple[Receipt | None, dict[str, str]]:
    if not isinstance(item, dict):
        return None, {"receipt": "must be an object"}
    errors: dict[str, str] = {}
    provider_id, status = item.get("provider_id"), item.get("status")
    if not isinstance(provider_id, str) or not provider_id or len(provider_id) > 200:
        errors["provider_id"] = "the provider's message id (1 to 200 characters) is required"
    if status not in RECEIPT_STATUSES:
        errors["status"] = f"must be one of {', '.join(sorted(RECEIPT_STATUSES))}"
    raw_at = item.get("occurred_at")
    occurred_at = parse_datetime(raw_at) if isinstance(raw_at, str) else None
    if occurred_at is None:
        errors["occurred_at"] = "an ISO 8601 date and time is required"
    elif timezone.is_naive(occurred_at):
        errors["occurred_at"] = "must carry a UTC offset (e.g. 2026-01-31T10:00:00Z)"
    code, detail = item.get("code", ""), item.get("detail", "")
    if not isinstance(code, str) or len(code) > 64:
        errors["code"] = "must be text of at most 64 characters"
    if not isinstance(detail, str):
        errors["detail"] = "must be text"
    if errors:
        return None, errors
    return Receipt(provider_id=provider_id, status=status, occurred_at=occurred_at,
                   code=code, detail=detail), {}


@csrf_exempt
@require_POST
def receipts_inbound(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """Delivery receipts and tracking events from a provider, in a batch:
    `{"receipts": [{"provider_id", "status", "occurred_at", "code"?, "detail"?}, ...]}`.

    Stored and acknowledged at once (202), applied in bulk by a worker. A batch with any bad
    receipt is refused whole (400, errors by index), so a provider's retry never half-applies.
    """
    gateway = _authenticated_gateway(request, gateway_id)
    if isinstance(gateway, JsonResponse):
        return gateway
    try:
        payload = _payload(request)
    except ValidationError as exc:
        return JsonResponse(exc.message_dict, status=400)
    items = payload.get("receipts")
    if not isinstance(items, list) or not items:
        return JsonResponse({"receipts": ["a non-empty list of receipts is required"]},
                            status=400)
    if len(items) > RECEIPTS_PER_CALL:
        return JsonResponse({"receipts": [f"at most {RECEIPTS_PER_CALL} receipts per call"]},
                            status=400)
    receipts: list[Receipt] = []
    errors: dict[str, dict[str, str]] = {}
    for index, item in enumerate(items):
        receipt, item_errors = _receipt_read(item)
        if item_errors:
            errors[str(index)] = item_errors
        elif receipt is not None:
            receipts.append(receipt)
    if errors:
        return JsonResponse({"receipts": errors}, status=400)
    receipts_record(gateway_id=gateway.pk, receipts=receipts)
    return JsonResponse({"accepted": len(receipts)}, status=202)
