from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


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
    """Who a mailing talks to: a list of rules, all of which a member must match.

    The rules are validated JSON (see `campaigns.rules`) and compile to one queryset; an empty
    list means every member.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from campaigns.rules import rules_validate

        try:
            rules_validate(self.rules)
        except ValidationError as error:
            # Errors are keyed by the path of the bad rule (`rules[2].op`), which is no model
            # field: keep the path in the text and put them on `rules` where forms show them.
            raise ValidationError({"rules": [
                message if path == "rules" else f"{path}: {message}"
                for path, messages in error.message_dict.items() for message in messages
            ]}) from error
