"""Staff roles: one Django group per role, with exactly the permissions below.

This module is the one place the sets are written down. `roles_sync()` makes the groups match
them (adding and removing permissions); it runs after every `migrate` (and so in the test
database) through the post_migrate handler connected here, and on demand with
`manage.py roles_sync`. A staff user gets a role by joining its group; superusers keep
everything. The staff API (config.permissions.StaffModelPermissions) and the admin both read
these model permissions, so a role means the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import AppConfig, apps
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.signals import post_migrate

ADD, CHANGE, DELETE, VIEW = "add", "change", "delete", "view"
ALL = (ADD, CHANGE, DELETE, VIEW)
BUILD = (ADD, CHANGE, VIEW)


def _perms(app_label: str, models: dict[str, tuple[str, ...]]) -> list[str]:
    return [f"{app_label}.{verb}_{model}" for model, verbs in models.items() for verb in verbs]


MARKETER = "marketer"
ANALYST = "analyst"
SUPPORT = "support"
ADMINISTRATOR = "administrator"

ROLES: dict[str, list[str]] = {
    # Builds audiences, content and mailings and sends them (a mailing's send, schedule and
    # test send are changes of the mailing); sees the gateways it sends through, never their
    # settings, keys, webhooks or users. Members' profiles stay with support: the rule
    # builder's sample and target-group exports need members.view_member, which it lacks.
    MARKETER: [
        *_perms("campaigns", {"campaign": ALL, "targetgroup": ALL, "staticlist": ALL,
                              "promocontent": ALL}),
        *_perms("communications", {"template": ALL, "mailing": ALL, "triggermailing": ALL,
                                   "cascadestep": ALL, "trigger": ALL, "gateway": (VIEW,),
                                   "frequencycap": (VIEW,), "quiethours": (VIEW,),
                                   "ordercredit": (VIEW,)}),
        *_perms("loyalty", {"favoriteproductsoffer": ALL, "favoriteproductsselection": (VIEW,),
                            "customeventtype": (VIEW,), "tier": (VIEW,), "product": (VIEW,),
                            "store": (VIEW,)}),
        *_perms("members", {"subscriptioncategory": (VIEW,), "customattribute": (VIEW,)}),
        # The second person of a large mailing (communications.services.approvals) is another
        # marketer: not the one who built it.
        "communications.approve_mailing",
    ],
    # Reads results: campaigns' and mailings' reports and their CSV exports (view permissions
    # only). No member, device, consent, feedback or message row: those carry personal data
    # and addresses, and the reports aggregate them.
    ANALYST: [
        *_perms("campaigns", {"campaign": (VIEW,), "promocontent": (VIEW,)}),
        *_perms("communications", {"mailing": (VIEW,), "triggermailing": (VIEW,),
                                   "template": (VIEW,), "gateway": (VIEW,),
                                   "ordercredit": (VIEW,)}),
    ],
    # Helps members: profiles (created and changed through member_upsert, one by one or by
    # CSV import), consents (through the ledger's
    # consent_record), suppressions, feedback threads and answers, and the messages a member
    # received. Nothing of campaigns, mailings or gateways.
    SUPPORT: [
        *_perms("members", {"member": BUILD, "consent": (VIEW, CHANGE),
                            "consentevent": (VIEW,), "suppression": (ADD, VIEW, DELETE),
                            "feedbackthread": (VIEW, CHANGE), "feedbackmessage": (VIEW,),
                            "device": (VIEW,), "subscriptioncategory": (VIEW,),
                            "auditentry": (VIEW,)}),
        *_perms("communications", {"message": (VIEW,)}),
        *_perms("loyalty", {"loyaltyaccount": (VIEW,), "order": (VIEW,)}),
    ],
    # Runs the installation: gateways, API keys, webhooks, program-wide sending rules,
    # staff users and their roles, and reads the audit log.
    ADMINISTRATOR: [
        *_perms("communications", {"gateway": ALL, "frequencycap": ALL, "quiethours": ALL}),
        *_perms("loyalty", {"apikey": ALL, "webhooksubscription": ALL,
                            "webhookdelivery": (VIEW, CHANGE), "customeventtype": ALL}),
        *_perms("members", {"subscriptioncategory": ALL, "customattribute": ALL}),
        *_perms("auth", {"user": ALL, "group": ALL}),
        "auditlog.view_logentry",
    ],
}


@dataclass
class RoleChange:
    role: str
    created: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = ["created"] if self.created else []
        parts += [f"+{perm}" for perm in self.added] + [f"-{perm}" for perm in self.removed]
        return f"{self.role}: {', '.join(parts)}"


def roles_sync(*, using: str = DEFAULT_DB_ALIAS) -> list[RoleChange]:
    """Make each role's group hold exactly its permissions; answer what changed (nothing on a
    second run). A permission named here that no model has is an error, not a silent gap."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    # post_migrate reaches the apps one by one: make sure every model's permissions exist.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    known = {f"{app_label}.{codename}": pk for pk, app_label, codename in
             Permission.objects.using(using).values_list("pk", "content_type__app_label",
                                                         "codename")}
    unknown = sorted({perm for perms in ROLES.values() for perm in perms} - known.keys())
    if unknown:
        raise LookupError(f"roles name permissions no model has: {', '.join(unknown)}")
    by_pk = {pk: perm for perm, pk in known.items()}
    changes = []
    with transaction.atomic(using=using):
        for role, perms in ROLES.items():
            group, created = Group.objects.using(using).get_or_create(name=role)
            held = set(group.permissions.values_list("pk", flat=True))
            wanted = {known[perm] for perm in perms}
            change = RoleChange(role, created=created,
                                added=sorted(by_pk[pk] for pk in wanted - held),
                                removed=sorted(by_pk[pk] for pk in held - wanted))
            if wanted - held:
                group.permissions.add(*(wanted - held))
            if held - wanted:
                group.permissions.remove(*(held - wanted))
            if created or change.added or change.removed:
                changes.append(change)
    return changes


def _roles_after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS,
                         **kwargs: Any) -> None:
    # post_migrate is sent once per app; the last one sees every model's permissions.
    with_models = [config for config in apps.get_app_configs() if config.models_module]
    if with_models and sender is with_models[-1]:
        roles_sync(using=using)


post_migrate.connect(_roles_after_migrate, dispatch_uid="config.roles.roles_sync")
