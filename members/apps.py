from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = "Members"

    def ready(self) -> None:
        # The staff roles' post_migrate handler (config.roles): `migrate`, and so the test
        # database, keep the roles' groups in sync. Staff users are this app's concern.
        import config.roles  # noqa: F401
        from members import hooks
        from members.services.feedback import feedback_member_erase, feedback_member_export

        hooks.ACCOUNT_SECTIONS.append((50, "account:feedback", gettext_lazy("Support")))
        hooks.ACCOUNT_SECTIONS.append((40, "account:preferences", gettext_lazy("Preferences")))
        hooks.MEMBER_EXPORT.append(feedback_member_export)
        hooks.MEMBER_ERASE.append(feedback_member_erase)
