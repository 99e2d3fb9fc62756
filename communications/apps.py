from django.apps import AppConfig


class CommunicationsConfig(AppConfig):
    name = "communications"
    verbose_name = "Communications"

    def ready(self) -> None:
        from anymail.signals import tracking

        from communications import (
            checks,  # noqa: F401  (registers system checks)
            engagement,  # noqa: F401  (registers target-group conditions)
            privacy,  # noqa: F401  (registers member export/erase hooks)
            transactional,  # noqa: F401  (registers member hooks)
        )
        from communications.anymail_tracking import tracking_received

        # Email services' tracking webhooks (anymail) become receipts and unsubscribes.
        tracking.connect(tracking_received, dispatch_uid="engage-anymail-tracking")
