"""`Idempotency-Key` on integration writes: a retry gets the first answer instead of a second
write.

The key's row is inserted in the same transaction as the write it guards, so a concurrent
retry waits on the unique index until the first commits (then replays its answer) or rolls
back (then runs itself). Only successful answers are kept: a refused request may be corrected
and sent again under the same key. Keys are compared per caller (API key or staff user) and
forgotten after ENGAGE_IDEMPOTENCY_TTL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty.integration.authentication import idempotency_owner
from loyalty.integration.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _request_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotent(request: Request, write: Callable[[], Response]) -> Response:
    """Run `write` once per idempotency key, in one transaction with the key's record."""
    key = request.headers.get(HEADER)
    if key is None:
        with transaction.atomic():
            return write()
    if not key or len(key) > 255:
        return Response({"code": "invalid_idempotency_key",
                         "detail": f"{HEADER} must be 1 to 255 characters"},
                        status=status.HTTP_400_BAD_REQUEST)
    owner, request_hash, now = idempotency_owner(request), _request_hash(request), timezone.now()
    with transaction.atomic():
        IdempotencyKey.objects.filter(
            owner=owner, key=key, created_at__lte=now - settings.ENGAGE_IDEMPOTENCY_TTL).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    owner=owner, key=key, request_hash=request_hash, status_code=0,
                    response={}, created_at=now)
        except IntegrityError:
            first = IdempotencyKey.objects.get(owner=owner, key=key)
            if first.request_hash != request_hash:
                return Response({"code": "idempotency_key_reused",
                                 "detail": "this Idempotency-Key was used with another request"},
                                status=status.HTTP_409_CONFLICT)
            return Response(first.response, status=first.status_code,
                            headers={REPLAYED_HEADER: "true"})
        response = write()
        if status.is_success(response.status_code):
            record.status_code, record.response = response.status_code, response.data
            record.save(update_fields=["status_code", "response"])
        else:
            transaction.set_rollback(True)
        return response


def idempotency_keys_purge() -> int:
    """Delete keys past ENGAGE_IDEMPOTENCY_TTL; returns how many."""
    cutoff = timezone.now() - settings.ENGAGE_IDEMPOTENCY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=cutoff).delete()
    return deleted
