"""Provider adapters: one module per provider, one registry keyed by `Gateway.provider`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from communications.gateways import fcm, file_sink, smpp, smtp  # noqa: F401  (register the adapters)
from communications.gateways.base import (
    GATEWAYS,
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
)

__all__ = [
    "GATEWAYS", "BaseGateway", "GatewayConfig", "GatewayError", "OutboundMessage", "Receipt",
    "SendResult",
    "gateway_config_validate", "gateway_for",
]


def gateway_config_validate(*, channel: str, provider: str, settings: Mapping[str, Any]) -> None:
    adapter = GATEWAYS.get(provider)
    if adapter is None:
        raise ValidationError(
            {"provider": f"unknown provider {provider!r}; known: {', '.join(sorted(GATEWAYS))}"}
        )
    if channel not in adapter.channels:
        raise ValidationError({"channel": f"{provider} does not send {channel}"})
    if not isinstance(settings, dict):
        raise ValidationError({"settings": "must be an object"})
    errors = adapter.settings_errors(settings)
    if errors:
        raise ValidationError(
            {"settings": [f"{key}: {text}" for key, text in sorted(errors.items())]}
        )


def gateway_for(config: GatewayConfig) -> BaseGateway:
    adapter = GATEWAYS[config.provider]
    if adapter.is_sink and not django_settings.DEBUG:
        raise GatewayError(f"{config.provider} is a development sink and DEBUG is off",
                           code="sink_refused", permanent=True)
    return adapter(config)
