from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty"

    def ready(self) -> None:
        from loyalty import privacy  # noqa: F401  (registers the member export hook)
        from loyalty.integration import tasks as integration_tasks  # noqa: F401  (the worker's)
        from loyalty.integration.events import consent_changes_record
        from loyalty.webhooks import tasks as webhook_tasks  # noqa: F401  (the worker's)
        from members import hooks

        hooks.CONSENTS_CHANGED.append(consent_changes_record)
        hooks.ACCOUNT_SECTIONS.append((20, "loyalty-account:favorites",
                                       gettext_lazy("Favorite products")))
