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
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from communications.models import Gateway
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


@csrf_exempt
@require_POST
def sms_inbound(request: HttpRequest, gateway_id: int) -> JsonResponse:
    """An SMS a member sent to us, relayed by a generic HTTP provider: `from` and `text`.

    Accepted for an inactive gateway too: a STOP must be honoured even after the program
    stopped sending through that provider.
    """
    gateway = Gateway.objects.filter(pk=gateway_id, channel=Channel.SMS).first()
    if gateway is None:
        return _problem(404, "unknown_gateway", f"no SMS gateway with id {gateway_id}")
    secret = gateway.settings.get("inbound_secret") if isinstance(gateway.settings, dict) else None
    if not secret or not isinstance(secret, str):
        return _problem(403, "inbound_not_configured",
                        "this gateway has no inbound_secret in its settings")
    if not _signature_valid(secret=secret, body=request.body,
                            header=request.headers.get(SIGNATURE_HEADER, "")):
        return _problem(403, "bad_signature",
                        f"missing or wrong {SIGNATURE_HEADER} header for this body")
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
