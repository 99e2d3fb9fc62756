"""What every app's API shares: services' validation errors become 400s naming the same fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

T = TypeVar("T")


def service_call(change: Callable[[], T], rename: dict[str, str] | None = None) -> T:
    """Run a service; its ValidationError becomes a 400 naming the same fields (`rename` maps
    a service's key to the request's field)."""
    try:
        return change()
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise serializers.ValidationError(exc.messages) from exc
        detail: dict[str, list[str]] = {}
        for key, texts in exc.message_dict.items():
            detail.setdefault((rename or {}).get(key, key), []).extend(texts)
        raise serializers.ValidationError(detail) from exc
