"""The mailing change page's forms: the mailing with its audience upload and schedule
checks, the cascade steps, the A/B variants, and the test send."""
from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from communications.address_lists import AddressListError, AddressListReport, address_list_read
from communications.admin.editing import (
    EDITABLE_STATES,
    State,
    validation_error_text,
)
from communications.models import (
    VARIANTS_MAX,
    VARIANTS_MIN,
    CascadeStep,
    Mailing,
    MailingVariant,
)
from communications.services import (
    mailing_schedulable_errors,
)
from communications.services.cascade import Step, cascade_steps_problems
from communications.services.experiments import variants_problems
from communications.services.schedules import recurrence_rule
from communications.services.test_sends import (
    TEST_RECIPIENTS_MAX,
    TESTABLE_STATES,
    members_by_keys,
)

MAILING_FIELDS = ["name", "campaign", "target_group", "static_list", "member", "template",
                  "gateway", "track_engagement", "cascade_after", "scheduled_at",
                  "send_in_member_timezone", "recurrence", "priority", "defer_capped",
                  "message_lifetime", "holdout_percent", "test_percent", "test_hours",
                  "winner_metric"]
AUDIENCE_FIELDS = ("target_group", "static_list", "member")
EXPERIMENT_FIELDS = ("holdout_percent", "test_percent", "test_hours", "winner_metric")
SCHEDULE_FIELDS = ["scheduled_at", "send_in_member_timezone", "recurrence"]
# `name`s of the extra submit buttons on the mailing change page.
SCHEDULE, START_NOW = "_schedule", "_start_now"


def pressed_submit_action(request: HttpRequest) -> str | None:
    if request.method == "POST":
        for name in (SCHEDULE, START_NOW):
            if name in request.POST:
                return name
    return None


def moment_text(moment: Any) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


class MailingForm(forms.ModelForm):
    # Which button was pressed; MailingAdmin.get_form sets it on the per-request form class.
    submit_action: ClassVar[str | None] = None
    address_list = forms.FileField(
        required=False, label="Upload an address list",
        help_text="Phones or emails, one a line or in a phone / email column of a CSV. The "
                  "members who have them become the audience, in place of the target group; "
                  "the counts of valid, unknown and invalid lines are shown after saving.")
    address_region = forms.CharField(
        required=False, max_length=2, label="Country of phones without a code",
        help_text="ISO code, e.g. DE, for numbers written without +country.")
    address_report: AddressListReport | None = None

    class Meta:
        model = Mailing
        fields = MAILING_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Left empty (or posted by a client that predates them) means the default.
        for name in ("priority", *EXPERIMENT_FIELDS):
            if name in self.fields:
                self.fields[name].required = False

    def _default_if_empty(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        return Mailing._meta.get_field(name).default if value in (None, "") else value

    def clean_priority(self) -> int:
        return self._default_if_empty("priority")

    def clean_holdout_percent(self) -> int:
        return self._default_if_empty("holdout_percent")

    def clean_test_percent(self) -> int:
        return self._default_if_empty("test_percent")

    def clean_test_hours(self) -> int:
        return self._default_if_empty("test_hours")

    def clean_winner_metric(self) -> str:
        return self._default_if_empty("winner_metric")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        state = State.DRAFT
        if self.instance.pk is not None:
            # The admin saves inside one transaction: the lock keeps the scheduler from starting
            # this mailing between this check and the save.
            state = (
                Mailing.objects.select_for_update().filter(pk=self.instance.pk)
                .values_list("state", flat=True).get()
            )
            if state not in EDITABLE_STATES:
                raise ValidationError(f"This mailing is {state}; it can no longer be changed.")
        self._address_list_read(cleaned)
        if cleaned.get("recurrence"):
            try:
                recurrence_rule(cleaned["recurrence"], start=timezone.now())
            except ValidationError as error:
                self.add_error("recurrence", error.message_dict["recurrence"])
        if self.submit_action in (SCHEDULE, START_NOW) or state in (State.SCHEDULED,
                                                                    State.RECURRING):
            candidate = Mailing(**{name: cleaned.get(name) for name in (
                *AUDIENCE_FIELDS, "template", "gateway", "recurrence")})
            errors = mailing_schedulable_errors(mailing=candidate)
            if self.address_report is not None:
                # The uploaded list becomes the audience when the mailing is saved.
                errors = {field: text for field, text in errors.items()
                          if field not in AUDIENCE_FIELDS}
            for field, text in errors.items():
                self.add_error(field if field in self.fields else None, text)
        if (state == State.SCHEDULED and self.submit_action is None
                and "scheduled_at" in self.fields and not cleaned.get("scheduled_at")):
            self.add_error("scheduled_at", "A scheduled mailing needs a time; use “Start now” "
                                           "to send it at once.")
        return cleaned

    def _address_list_read(self, cleaned: dict[str, Any]) -> None:
        upload = cleaned.get("address_list")
        if not upload:
            return
        template = cleaned.get("template")
        if template is None:
            self.add_error("address_list", "Choose the template first: its channel says which "
                                           "addresses the list holds.")
            return
        try:
            self.address_report = address_list_read(
                file=upload, channel=template.channel,
                region=(cleaned.get("address_region") or "").upper() or None)
        except AddressListError as error:
            self.add_error("address_list", str(error))


TEST_SEND = "_test_send"


class MailingTestSendForm(forms.Form):
    """The "Send a test" fields on the mailing page (inside its form, so prefixed)."""

    members = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="Member ids or external ids, separated by commas or spaces; each gets the "
                  "message rendered for them.")
    addresses = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="Addresses of the mailing's channel (emails, phones in +E.164 form), one "
                  "per line or separated by commas.")
    sample_member = forms.CharField(
        required=False, max_length=64,
        help_text="For typed addresses: render for this member (id or external id); blank "
                  "leaves the member fields empty.")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        members = (cleaned.get("members") or "").replace(",", " ").split()
        addresses = [a for a in (cleaned.get("addresses") or "").replace(",", "\n").split()
                     if a]
        if not members and not addresses:
            raise ValidationError("Choose at least one member or type an address.")
        if len(members) + len(addresses) > TEST_RECIPIENTS_MAX:
            raise ValidationError(f"At most {TEST_RECIPIENTS_MAX} recipients per test send.")
        try:
            cleaned["member_ids"] = members_by_keys(keys=members)
            sample = (cleaned.get("sample_member") or "").strip()
            cleaned["sample_member_id"] = (members_by_keys(keys=[sample])[0]
                                           if sample else None)
        except ValidationError as error:
            raise ValidationError(validation_error_text(error)) from error
        cleaned["address_list"] = addresses
        return cleaned


def before_scheduling_fields(mailing: Mailing) -> list[Any]:
    if mailing.state not in TESTABLE_STATES:
        return []
    return [("Before scheduling: estimated cost and a test send",
             {"fields": ["cost_estimate", "test_send"]})]


class CascadeStepFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        mailing = self.instance  # with the mailing form's changes applied
        steps = [Step(form.cleaned_data["position"], form.cleaned_data["template"],
                      form.cleaned_data["gateway"])
                 for form in self.forms
                 if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        positions = [step.position for step in steps]
        if len(set(positions)) != len(positions):
            raise ValidationError("Two steps have the same position.")
        problems = cascade_steps_problems(
            first_channel=mailing.template.channel if mailing.template_id else None,
            steps=sorted(steps, key=lambda step: step.position))
        if problems:
            raise ValidationError(problems)


class _WhileEditableInline:
    """An inline of the mailing that can change only while the mailing can (its audience is
    not frozen yet)."""

    def _editable(self, obj: Mailing | None) -> bool:
        return obj is None or obj.state in EDITABLE_STATES

    def has_add_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


class CascadeStepInline(_WhileEditableInline, admin.TabularInline):
    """The further channels of the cascade, tried in order after the mailing's own."""

    model = CascadeStep
    formset = CascadeStepFormSet
    extra = 0
    fields = ["position", "template", "gateway"]
    verbose_name = "next channel of the cascade"
    verbose_name_plural = ("Channel cascade: members the mailing's own channel cannot reach "
                           "get the next channel (see “cascade after”)")


class MailingVariantFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        mailing = self.instance  # with the mailing form's changes applied
        variants = sorted(((form.cleaned_data["position"], form.cleaned_data["template"])
                           for form in self.forms
                           if form.cleaned_data and not form.cleaned_data.get("DELETE")),
                          key=lambda variant: variant[0])
        if not variants:
            return
        positions = [position for position, _ in variants]
        if positions != list(range(1, len(positions) + 1)):
            raise ValidationError(f"Number the variants 1 to {len(positions)} (A, B, ...), "
                                  "each once.")
        problems = variants_problems(
            channel=mailing.template.channel if mailing.template_id else None,
            templates=[template for _, template in variants])
        if _cascade_steps_posted(self.data):
            problems.append("an A/B tested mailing cannot have a channel cascade")
        if mailing.send_in_member_timezone:
            problems.append("an A/B tested mailing cannot be sent in each member's time zone")
        if mailing.recurrence:
            problems.append("an A/B tested mailing cannot recur")
        if problems:
            raise ValidationError(problems)


def _cascade_steps_posted(data: Any) -> bool:
    """Whether the page's cascade inline keeps at least one step (the two inlines are saved
    together, so neither formset sees the other's rows in the database yet)."""
    prefix = "cascade_steps"
    try:
        total = int(data.get(f"{prefix}-TOTAL_FORMS") or 0)
    except ValueError:
        return False
    return any(data.get(f"{prefix}-{index}-template") and not data.get(f"{prefix}-{index}-DELETE")
               for index in range(total))


class MailingVariantInline(_WhileEditableInline, admin.TabularInline):
    """The A/B variants: each a template sent to an even share of the test part of the
    audience; the winner goes to the rest after the test hours."""

    model = MailingVariant
    formset = MailingVariantFormSet
    extra = 0
    max_num = VARIANTS_MAX
    fields = ["position", "template"]
    verbose_name = "A/B variant"
    verbose_name_plural = (f"A/B variants: {VARIANTS_MIN} to {VARIANTS_MAX} templates, numbered "
                           "1 (A) on; none for a plain mailing")

