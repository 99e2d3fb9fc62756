"""Provider adapters: one module per provider, one registry keyed by `Gateway.provider`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from communications.gateways import (  # noqa: F401  (register the adapters)
    anymail_esp,
    apns,
    console_sink,
    fcm,
    file_sink,
    hms,
    http_sms,
    smpp,
    smtp,
    telegram,
    twilio,
    viber,
    webpush,
)
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
    "gateway_config_validate", "gateway_for", "rate_per_second_error",
]


def rate_per_second_error(rate: Any) -> str:
    """What is wrong with a `rate_per_second` setting ('' when nothing): the rate limit every
    worker together keeps to on a gateway, in messages per second (0.5 = one every 2 s)."""
    if (isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate)
            or rate <= 0):
        return "must be a number of messages per second above 0"
    return ""


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
    # Every provider: the rate limit is kept by the dispatcher, not by the adapter.
    if "rate_per_second" in settings and rate_per_second_error(settings["rate_per_second"]):
        errors["rate_per_second"] = rate_per_second_error(settings["rate_per_second"])
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
