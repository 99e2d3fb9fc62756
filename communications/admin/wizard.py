"""The mailing wizard: a new mailing in four steps — audience, content (with A/B variants and a
control group), sending, review — for marketers who would rather not face the whole form.

It is django-formtools' SessionWizardView inside the admin: each step is a small form, the
steps' data waits in the session, and only the last step writes, through the same services
as the mailing form and the API (`mailing_create`, then `mailing_schedule` when asked to), in
one transaction: a refusal at the end (an approval needed, the budget blocked) creates
nothing and shows on the review step.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from formtools.wizard.views import SessionWizardView

from campaigns.models import Campaign, StaticList, TargetGroup
from communications.admin.editing import cost_estimate_html
from communications.models import (
    HOLDOUT_PERCENT_MAX,
    TEST_PERCENT_MAX,
    VARIANTS_MAX,
    Gateway,
    Mailing,
    Template,
    WinnerMetric,
    variant_label,
)
from communications.selectors.costs import mailing_cost_estimate
from communications.services.mailings import (
    mailing_create,
    mailing_schedulable_errors,
    mailing_schedule,
)

VARIANT_FIELDS = [f"variant_{variant_label(position).lower()}"
                  for position in range(2, VARIANTS_MAX + 1)]


class AudienceStep(forms.Form):
    name = forms.CharField(max_length=200)
    campaign = forms.ModelChoiceField(Campaign.objects.exclude(status=Campaign.Status.ARCHIVED)
                                      .order_by("name"), required=False)
    target_group = forms.ModelChoiceField(TargetGroup.objects.order_by("name"), required=False)
    static_list = forms.ModelChoiceField(StaticList.objects.order_by("name"), required=False,
                                         help_text="Or a fixed list of members instead.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("target_group")) == bool(data.get("static_list")):
            raise ValidationError("Choose a target group or a static list (one of them).")
        return data


class ContentStep(forms.Form):
    template = forms.ModelChoiceField(
        Template.objects.order_by("channel", "name"),
        help_text="Its channel is the mailing's. With A/B variants this is variant A.")
    holdout_percent = forms.IntegerField(
        min_value=0, max_value=HOLDOUT_PERCENT_MAX, initial=0, label="Holdout %",
        help_text="A control group kept out of the mailing, to measure its lift against.")
    test_percent = forms.IntegerField(min_value=1, max_value=TEST_PERCENT_MAX, initial=20,
                                      label="A/B test %")
    test_hours = forms.IntegerField(min_value=1, max_value=168, initial=4, label="A/B test hours")
    winner_metric = forms.ChoiceField(choices=WinnerMetric.choices, initial=WinnerMetric.OPEN_RATE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Variants B to E after the template (A); the A/B fields matter only with one.
        for name in VARIANT_FIELDS:
            self.fields[name] = forms.ModelChoiceField(
                Template.objects.order_by("channel", "name"), required=False,
                label=f"Variant {name[-1].upper()}")
        for name in ("test_percent", "test_hours", "winner_metric"):
            self.fields[name] = self.fields.pop(name)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        template = data.get("template")
        for name in VARIANT_FIELDS:
            variant = data.get(name)
            if template is not None and variant is not None and variant.channel != template.channel:
                self.add_error(name, f"a {variant.channel} template: the mailing sends "
                                     f"{template.channel}")
        return data


def content_variants(content: dict[str, Any]) -> list[Template]:
    """The A/B variants the content step chose, A (the template) first; none without B–E."""
    chosen = [content.get(name) for name in VARIANT_FIELDS]
    if not any(chosen):
        return []
    return [content["template"], *(template for template in chosen if template)]


class SendingStep(forms.Form):
    gateway = forms.ModelChoiceField(Gateway.objects.filter(is_active=True).order_by("name"))
    track_engagement = forms.BooleanField(
        required=False, initial=True, help_text="Count opens and clicks through Engage's links.")
    when = forms.ChoiceField(choices=[("draft", "Save as a draft"), ("now", "Start now"),
                                      ("at", "Schedule for")], initial="draft",
                             widget=forms.RadioSelect)
    scheduled_at = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime)

    def __init__(self, *args: Any, channel: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if channel:
            self.fields["gateway"].queryset = self.fields["gateway"].queryset.filter(
                channel=channel)
            self.fields["gateway"].help_text = f"The active {channel} gateways."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("when") == "at" and not data.get("scheduled_at"):
            self.add_error("scheduled_at", "say when the mailing goes out")
        return data


class ReviewStep(forms.Form):
    """Nothing to fill in: the review shows what will be created, and any refusal."""


STEPS = [("audience", AudienceStep), ("content", ContentStep), ("sending", SendingStep),
         ("review", ReviewStep)]
STEP_TITLES = {"audience": "Who: the audience", "content": "What: the content",
               "sending": "How and when: the sending", "review": "Review and create"}


class MailingWizard(SessionWizardView):
    form_list = STEPS
    template_name = "admin/communications/mailing/wizard.html"
    model_admin: admin.ModelAdmin | None = None  # the mailing admin, given by as_view

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.model_admin.has_add_permission(request):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self, step: str | None = None) -> dict[str, Any]:
        if step == "sending":
            content = self.get_cleaned_data_for_step("content") or {}
            template = content.get("template")
            return {"channel": template.channel if template else None}
        return {}

    def _draft(self) -> tuple[Mailing, list[Template], dict[str, Any]]:
        """The mailing the steps describe, unsaved, with its variants and the sending choice."""
        audience = self.get_cleaned_data_for_step("audience") or {}
        content = self.get_cleaned_data_for_step("content") or {}
        sending = self.get_cleaned_data_for_step("sending") or {}
        fields = {name: audience.get(name) for name in ("name", "campaign", "target_group",
                                                         "static_list")}
        fields.update({name: content.get(name) for name in (
            "template", "holdout_percent", "test_percent", "test_hours", "winner_metric")})
        fields.update(gateway=sending.get("gateway"),
                      track_engagement=sending.get("track_engagement", True))
        return Mailing(**fields), content_variants(content), sending

    def get_context_data(self, form: forms.Form, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(form=form, **kwargs)
        request = self.request
        context.update(self.model_admin.admin_site.each_context(request))
        context.update(opts=Mailing._meta, title="New mailing",
                       step_titles=[(name, STEP_TITLES[name]) for name, _ in STEPS],
                       step_title=STEP_TITLES[self.steps.current])
        if self.steps.current == "review":
            mailing, variants, sending = self._draft()
            context.update(draft=mailing, variants=[(variant_label(position), template)
                                                    for position, template
                                                    in enumerate(variants, start=1)],
                           when=sending.get("when"), scheduled_at=sending.get("scheduled_at"),
                           estimate=cost_estimate_html(mailing_cost_estimate(mailing=mailing)),
                           problems=mailing_schedulable_errors(mailing=mailing))
        return context

    def done(self, form_list: Any, **kwargs: Any) -> HttpResponse:
        mailing, variants, sending = self._draft()
        fields = {name: getattr(mailing, name) for name in (
            "name", "campaign", "target_group", "static_list", "template", "gateway",
            "track_engagement", "holdout_percent", "test_percent", "test_hours",
            "winner_metric")}
        when = sending.get("when")
        try:
            with transaction.atomic():
                created = mailing_create(by=self.request.user, variants=variants or None,
                                         **fields)
                if when in ("now", "at"):
                    at = sending.get("scheduled_at") if when == "at" else None
                    created = mailing_schedule(mailing=created, at=at, by=self.request.user)
        except ValidationError as error:
            return self._refused(error)
        verb = {"now": "created and scheduled to start now", "at": "created and scheduled",
                "draft": "saved as a draft"}.get(when, "created")
        messages.success(self.request, f"The mailing “{created.name}” was {verb}.")
        warning = getattr(created, "budget_warning", "")
        if warning:
            messages.warning(self.request, warning)
        return HttpResponseRedirect(reverse("admin:communications_mailing_change",
                                            args=[created.pk]))

    def _refused(self, error: ValidationError) -> HttpResponse:
        """Back to the review step, nothing created, the refusal on the page."""
        self.storage.current_step = "review"
        form = self.get_form(step="review", data=self.storage.get_step_data("review"))
        form.is_valid()
        lines = ([f"{field}: {'; '.join(texts)}" for field, texts in error.message_dict.items()]
                 if hasattr(error, "error_dict") else error.messages)
        for line in lines:
            form.add_error(None, line)
        return self.render(form)
