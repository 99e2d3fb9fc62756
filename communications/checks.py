from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.database)
def sink_gateways_only_in_debug(app_configs: Any = None, databases: Any = None,
                                **kwargs: Any) -> list[Error]:
    """Sink gateways swallow real members' messages: refuse active ones in production.

    A database check, so it runs with `manage.py check --database default` (and `migrate`); the
    send path refuses sinks on its own too (`gateway_for`).
    """
    if settings.DEBUG or not databases:
        return []
    from communications.gateways import GATEWAYS
    from communications.models import Gateway

    sinks = [key for key, adapter in GATEWAYS.items() if adapter.is_sink]
    names = Gateway.objects.filter(provider__in=sinks, is_active=True).values_list("name",
                                                                                  flat=True)
    return [
        Error(
            f"Gateway {name!r} uses a development sink while DEBUG is off.",
            hint="Deactivate it or switch it to a real provider.",
            id="communications.E001",
        )
        for name in names
    ]
