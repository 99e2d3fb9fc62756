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


@register(Tags.database, Tags.security, deploy=True)
def gateway_secrets_readable(app_configs: Any = None, databases: Any = None,
                             **kwargs: Any) -> list[Error]:
    """Every gateway's secrets open with ENGAGE_SECRETS_KEY (`check --deploy --database
    default`): a key dropped before `gateway_secrets_rotate` ran leaves a gateway unable to log
    in. A deploy check only, as `migrate` runs the others before this column exists."""
    if not databases:
        return []
    from communications.models import Gateway
    from communications.secrets import SecretsUnreadable, secrets_decrypt

    errors = []
    for name, token in Gateway.objects.exclude(secrets="").values_list("name", "secrets"):
        try:
            secrets_decrypt(token)
        except SecretsUnreadable:
            errors.append(Error(
                f"Gateway {name!r} has secrets ENGAGE_SECRETS_KEY cannot decrypt.",
                hint="Put the key they were written with back in ENGAGE_SECRETS_KEY (after "
                     "the new one), run `manage.py gateway_secrets_rotate`, then drop it.",
                id="communications.E002"))
    return errors
