"""What every app's API shares: services' validation errors become 400s naming the same fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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


class FlatRepresentation:
    """A serializer's `to_representation` for the app's hottest calls: the same fields and
    formats (each field's own to_representation, None kept as None), without the per-object
    machinery of a Serializer (attribute lookup through `source_attrs`, the readable-fields
    generator, SkipField checks), which cost more than the values on a page of twenty.

    Only for serializers whose fields all read one plain attribute of the object; anything
    else (a dotted source, `source="*"`, a method field) is refused when it is built."""

    def __init__(self, serializer: serializers.Serializer) -> None:
        self._fields: list[tuple[str, str, Callable[[Any], Any]]] = []
        for field in serializer.fields.values():
            if field.write_only:
                continue
            if (isinstance(field, serializers.SerializerMethodField) or field.source == "*"
                    or len(field.source_attrs) != 1):
                raise TypeError(f"{type(serializer).__name__}.{field.field_name} does not read "
                                f"one plain attribute")
            self._fields.append((field.field_name, field.source, field.to_representation))

    def __call__(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, source, represent in self._fields:
            value = getattr(instance, source)
            data[name] = None if value is None else represent(value)
        return data
