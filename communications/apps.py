from django.apps import AppConfig


class CommunicationsConfig(AppConfig):
    name = "communications"
    verbose_name = "Communications"

    def ready(self) -> None:
        from communications import checks  # noqa: F401  (registers system checks)
        from communications import transactional  # noqa: F401  (registers member hooks)
