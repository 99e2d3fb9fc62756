from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns.api_me import offers_home
        from members import hooks

        hooks.MEMBERS_CHANGED.append(_watched_groups_follow)
        hooks.ACCOUNT_SECTIONS.append((10, "campaigns-account:offers", gettext_lazy("Offers")))
        hooks.ACCOUNT_HOME.append(offers_home)
        hooks.ACCOUNT_HOME_TEMPLATES.append("account/offers_home.html")


def _watched_groups_follow(member_ids: list[int] | None) -> None:
    """Re-evaluate the changed members in a worker; no task at all while nothing is watched."""
    from campaigns.models import TargetGroup
    from campaigns.tasks import target_groups_reevaluate

    if TargetGroup.objects.filter(is_watched=True).exists():
        target_groups_reevaluate.delay(member_ids)
