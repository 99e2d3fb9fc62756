from django.apps import AppConfig
from django.utils.translation import gettext_lazy


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
        from communications.selectors.inbox import inbox_home
        from communications.services.attribution import credit_refund_apply
        from communications.services.triggers import triggers_nudge
        from loyalty import hooks as loyalty_hooks
        from loyalty.event_log import EVENT_READERS
        from members import hooks

        # Email services' tracking webhooks (anymail) become receipts and unsubscribes.
        tracking.connect(tracking_received, dispatch_uid="engage-anymail-tracking")
        # The member's inbox in the account pages, and its unread count on the home call.
        hooks.ACCOUNT_SECTIONS.append(
            (30, "communications-account:inbox", gettext_lazy("Messages")))
        hooks.ACCOUNT_HOME.append(inbox_home)
        hooks.ACCOUNT_HOME_TEMPLATES.append("account/home_messages.html")
        # Trigger mailings read the event log as soon as the ingest commits.
        EVENT_READERS.append(triggers_nudge)
        # A refund lowers or reverses the order's credit to a campaign, in its transaction.
        loyalty_hooks.ORDER_REFUNDED.append(
            lambda order: credit_refund_apply(order=order))
