from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns.tasks import target_groups_reevaluate
        from members import hooks

        hooks.MEMBERS_CHANGED.append(
            lambda member_ids: target_groups_reevaluate.delay(member_ids))
