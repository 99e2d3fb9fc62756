from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from members.models import Member


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, default="EUR")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__isnull=True)
                | models.Q(starts_on__isnull=True)
                | models.Q(ends_on__gte=models.F("starts_on")),
                name="campaign_period_ordered",
            )
        ]

    def __str__(self) -> str:
        return self.name


class TargetGroup(models.Model):
    """Who a mailing talks to: a rule tree over members, their purchases and engagement.

    The tree is validated JSON (`campaigns.rules`) that compiles to one queryset; an empty tree
    means every member. A watched group also keeps its current members in
    `TargetGroupMembership`, so changes to a member can say whether they entered or left it.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    is_watched = models.BooleanField(
        default=False,
        help_text="Keep the membership current and emit TARGET_GROUP_ENTERED / LEFT events.")
    watched_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from campaigns.rules import rules_error_lines, rules_validate

        try:
            rules_validate(self.rules, target_group=self if self.pk else None)
        except ValidationError as error:
            # Errors are keyed by the path in the tree (`rules.and[2].value`), which is no
            # model field: keep the path in the text and put them on `rules` for forms.
            raise ValidationError({"rules": rules_error_lines(error)}) from error


class TargetGroupMembership(models.Model):
    """A member currently in a watched target group, since when."""

    target_group = models.ForeignKey(TargetGroup, on_delete=models.CASCADE,
                                     related_name="memberships", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="target_group_memberships")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["target_group", "member"],
                                    name="target_group_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.target_group_id}"


class StaticList(models.Model):
    """A fixed set of members: uploaded ids, a CSV of external ids, or a frozen target group."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        FROZEN = "frozen", "Frozen from a target group"
        ADDRESS_LIST = "address", "Members of an uploaded address list"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.UPLOAD)
    frozen_from = models.ForeignKey(TargetGroup, on_delete=models.SET_NULL, null=True,
                                    blank=True, related_name="frozen_lists")
    taken_at = models.DateTimeField(help_text="When its members were taken.")
    size = models.PositiveIntegerField(default=0)
    # For an address list: what the file held (total, valid, unknown, invalid, duplicates,
    # the first invalid lines); only the valid addresses some member has became entries.
    address_report = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self) -> str:
        return self.name


class StaticListMember(models.Model):
    static_list = models.ForeignKey(StaticList, on_delete=models.CASCADE,
                                    related_name="entries", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="static_list_entries")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["static_list", "member"],
                                    name="static_list_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in list {self.static_list_id}"
