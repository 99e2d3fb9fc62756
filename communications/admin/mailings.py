"""Mailings: the form, the cascade, the change page with its state buttons, report,
calendar, estimate and test send."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html, format_html_join

from campaigns.selectors import members_count
from communications.admin.editing import (
    CANCELLABLE_STATES,
    EDITABLE_STATES,
    State,
    Status,
    cost_estimate_html,
    validation_error_text,
)
from communications.admin.mailing_forms import (
    AUDIENCE_FIELDS,
    EXPERIMENT_FIELDS,
    MAILING_FIELDS,
    SCHEDULE,
    SCHEDULE_FIELDS,
    START_NOW,
    TEST_SEND,
    CascadeStepInline,
    MailingForm,
    MailingTestSendForm,
    MailingVariantInline,
    before_scheduling_fields,
    moment_text,
    pressed_submit_action,
)
from communications.admin.wizard import MailingWizard
from communications.charts import mailing_report_context
from communications.models import (
    Mailing,
    Message,
)
from communications.selectors import mailing_status_counts, mailings_with_counts
from communications.selectors.calendar import messaging_calendar
from communications.selectors.costs import mailing_cost_estimate
from communications.selectors.experiments import mailing_experiment
from communications.selectors.reports import mailing_report
from communications.services import (
    mailing_approve,
    mailing_cancel,
    mailing_pause,
    mailing_resume,
    mailing_schedule,
    mailing_start_now,
)
from communications.services.audiences import (
    mailing_address_list_attach,
    mailing_audience,
    mailing_audience_errors,
)
from communications.services.experiments import mailing_test_end_now
from communications.services.test_sends import (
    TEST_RECIPIENTS_MAX,
    TESTABLE_STATES,
    mailing_test_send,
)


@dataclass(frozen=True)
class _StateChange:
    """A button on the change page of a mailing that is no longer editable."""

    label: str
    states: tuple[str, ...]  # where the button shows
    change: Callable[..., Mailing]
    done: str  # logged and shown, after the mailing's name
    applies: Callable[[Mailing], bool] = lambda mailing: True  # and for which mailings

    def shown(self, mailing: Mailing) -> bool:
        return mailing.state in self.states and self.applies(mailing)


STATE_CHANGES = {
    "_pause": _StateChange("Pause", (State.SENDING,), mailing_pause, "is paused."),
    "_resume": _StateChange("Resume", (State.PAUSED,), mailing_resume, "is sending again."),
    "_cancel": _StateChange("Cancel mailing", CANCELLABLE_STATES, mailing_cancel,
                            "is cancelled."),
    # An A/B test ended early by the marketer: the winner by the mailing's metric so far.
    "_winner": _StateChange("Choose the winner now", (State.SENDING,), mailing_test_end_now,
                            "has its A/B winner; the rest of the audience gets it.",
                            applies=lambda mailing: mailing.winner_chosen_at is None
                            and mailing.variants.exists()),
}




@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    form = MailingForm
    inlines = [CascadeStepInline, MailingVariantInline]
    list_display = ["name", "state", "channel", "scheduled_at", "total", "queued", "sent",
                    "failed", "skipped", "campaign"]
    list_filter = ["state", "campaign"]
    search_fields = ["name"]
    ordering = ["-id"]
    actions = ["schedule_selected", "start_selected", "approve_selected", "pause_selected",
               "resume_selected", "cancel_selected"]
    always_readonly = ["state", "channel", "audience_size", "started_at", "completed_at",
                       "failure_reason", "created_by", "created_at", "approved_by",
                       "approved_at", "status_counts",
                       "address_list_report", "recurring_parent", "cost_estimate",
                       "test_send", "winner", "winner_chosen_at"]
    raw_id_fields = ["member"]
    # The standard list with a link to the messaging calendar.
    change_list_template = "admin/communications/mailing/calendar_changelist.html"
    report_refresh_seconds = 5

    def get_queryset(self, request: HttpRequest) -> QuerySet[Mailing]:
        # Trigger mailings have their own screen (admin/triggers.py).
        return mailings_with_counts().filter(kind=Mailing.Kind.REGULAR)

    def get_fieldsets(self, request: HttpRequest, obj: Mailing | None = None) -> list[Any]:
        main = (None, {"fields": [name for name in MAILING_FIELDS if name not in AUDIENCE_FIELDS
                                  and name not in SCHEDULE_FIELDS
                                  and name not in EXPERIMENT_FIELDS]})
        experiment = ("Control group and A/B test (the variants are below)",
                      {"fields": [*EXPERIMENT_FIELDS]})
        audience = ("Audience: one of a target group, a static list, a member or an uploaded "
                    "address list", {"fields": [*AUDIENCE_FIELDS, "address_list",
                                                "address_region"]})
        schedule = ("When", {"fields": SCHEDULE_FIELDS})
        if obj is None:
            return [main, audience, schedule, experiment]
        if obj.winner_chosen_at is not None:
            experiment[1]["fields"] += ["winner", "winner_chosen_at"]
        if obj.state not in EDITABLE_STATES:
            audience = (audience[0], {"fields": [*AUDIENCE_FIELDS, "address_list_report"]})
        else:
            audience[1]["fields"].append("address_list_report")
        return [
            main, audience, schedule, experiment, *before_scheduling_fields(obj),
            ("State", {"fields": ["state", "channel", "audience_size", "recurring_parent",
                                  "started_at", "completed_at", "failure_reason",
                                  "created_by", "created_at", "approved_by",
                                  "approved_at"]}),
            ("Messages", {"fields": ["status_counts"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Mailing | None = None) -> Sequence[str]:
        if obj is not None and obj.state not in EDITABLE_STATES:
            return [*MAILING_FIELDS, *self.always_readonly]
        return self.always_readonly

    def has_delete_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        # Deleting a mailing deletes its messages, the delivery log; only drafts have none.
        if obj is not None and obj.state != State.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_form(self, request: HttpRequest, obj: Mailing | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        form.submit_action = pressed_submit_action(request)
        return form

    # --- the change page --------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Mailing, form: MailingForm,
                   change: bool) -> None:
        if change:
            # Only the form's own fields: writing the whole row would also write back the state.
            obj.save(update_fields=[name for name in form.fields if name in MAILING_FIELDS])
        else:
            obj.created_by = request.user
            obj.save()
        if form.address_report is not None:
            static_list = mailing_address_list_attach(mailing=obj, report=form.address_report)
            obj.static_list, obj.target_group, obj.member = static_list, None, None
            report = form.address_report
            self.message_user(request, f"Address list: {report.total:,} lines, "
                                       f"{report.valid:,} valid ({report.unknown:,} of them "
                                       f"no member has), {report.invalid:,} invalid, "
                                       f"{report.duplicates:,} repeated; {static_list.size:,} "
                                       f"members are the audience.", messages.INFO)

    def save_related(self, request: HttpRequest, form: MailingForm, formsets: Any,
                     change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Scheduled after the cascade steps are saved, so the check sees them; a refusal
        # rolls the whole save back (the admin saves in one transaction).
        obj = form.instance
        try:
            if form.submit_action == SCHEDULE:
                mailing = mailing_schedule(mailing=obj, at=obj.scheduled_at, by=request.user)
                self.message_user(request, f"“{mailing}” is scheduled for "
                                           f"{moment_text(mailing.scheduled_at)}.",
                                  messages.SUCCESS)
                self._budget_warn(request, mailing)
            elif form.submit_action == START_NOW:
                mailing = mailing_start_now(mailing=obj, by=request.user)
                self.message_user(request, f"“{obj}” is starting now.", messages.SUCCESS)
                self._budget_warn(request, mailing)
        except ValidationError as error:
            transaction.set_rollback(True)
            self.message_user(request, "Not scheduled: " + validation_error_text(error),
                              messages.ERROR)

    def _budget_warn(self, request: HttpRequest, mailing: Mailing) -> None:
        # Scheduled over what is left of the campaign's budget (ENGAGE_BUDGET_BLOCK off).
        warning = getattr(mailing, "budget_warning", "")
        if warning:
            self.message_user(request, f"“{mailing}”: over budget: {warning}.",
                              messages.WARNING)

    def response_add(self, request: HttpRequest, obj: Mailing,
                     post_url_continue: str | None = None) -> HttpResponse:
        if pressed_submit_action(request):
            return HttpResponseRedirect(
                reverse("admin:communications_mailing_change", args=[obj.pk])
            )
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Mailing) -> HttpResponse:
        if pressed_submit_action(request):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and TEST_SEND in request.POST:
            return self._test_send_view(request, object_id)
        if request.method == "POST":
            for name, state_change in STATE_CHANGES.items():
                if name in request.POST:
                    return self._state_change_view(request, object_id, state_change)
        return super().change_view(request, object_id, form_url, extra_context)

    def _state_change_view(self, request: HttpRequest, object_id: str,
                           state_change: _StateChange) -> HttpResponse:
        mailing = self.get_object(request, unquote(object_id))
        if mailing is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, mailing):
            raise PermissionDenied
        try:
            state_change.change(mailing=mailing)
        except ValidationError as error:
            self.message_user(request, validation_error_text(error), messages.ERROR)
        else:
            self.log_change(request, mailing, f"{state_change.label}: the mailing "
                                              f"{state_change.done}")
            self.message_user(request, f"“{mailing}” {state_change.done}", messages.SUCCESS)
        return HttpResponseRedirect(request.path)

    def _test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Send a test" button: send now, each recipient's outcome as a message."""
        mailing = self.get_object(request, unquote(object_id))
        if mailing is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, mailing):
            raise PermissionDenied
        form = MailingTestSendForm(request.POST, prefix="test_send")
        if not form.is_valid():
            for texts in form.errors.values():
                self.message_user(request, "Test send: " + " ".join(texts), messages.ERROR)
            return HttpResponseRedirect(request.path)
        try:
            sent = mailing_test_send(
                mailing=mailing, member_ids=form.cleaned_data["member_ids"],
                addresses=form.cleaned_data["address_list"],
                sample_member_id=form.cleaned_data["sample_member_id"], by=request.user)
        except ValidationError as error:
            self.message_user(request, "Test send: " + validation_error_text(error),
                              messages.ERROR)
            return HttpResponseRedirect(request.path)
        self.log_change(request, mailing, f"Sent a test to {len(sent)} recipient(s).")
        for message in sent:
            who = message.address + (f" (member {message.member_id})"
                                     if message.member_id else "")
            if message.status not in (Status.FAILED, Status.UNKNOWN):
                self.message_user(request, f"Test to {who}: {message.get_status_display()}.",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"Test to {who}: {message.get_status_display()}"
                                           f" — {message.error_code} {message.error}".rstrip(),
                                  messages.ERROR)
        return HttpResponseRedirect(request.path)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any],
                           add: bool = False, change: bool = False, form_url: str = "",
                           obj: Mailing | None = None) -> HttpResponse:
        editable = obj is None or obj.state in EDITABLE_STATES
        allowed = (self.has_change_permission(request, obj) if change
                   else self.has_add_permission(request))
        buttons = []
        if allowed and editable:
            buttons += [(SCHEDULE, "Save and schedule"), (START_NOW, "Start now")]
        if allowed and obj is not None:
            buttons += [(name, state_change.label)
                        for name, state_change in STATE_CHANGES.items()
                        if state_change.shown(obj)]
        context["mailing_buttons"] = buttons
        if obj is not None and obj.state not in EDITABLE_STATES:
            context["mailing_report"] = self._report_context(obj)
            # The report section's include names its variables; this one it finds here.
            context["experiment"] = context["mailing_report"]["experiment"]
        if not editable:
            context.update(show_save=False, show_save_and_continue=False,
                           show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the report and the calendar --------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view, name = self.admin_site.admin_view, f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("calendar/", view(self.calendar_view), name=f"{name}_calendar"),
            path("wizard/", view(MailingWizard.as_view(model_admin=self)),
                 name=f"{name}_wizard"),
            path("<path:object_id>/report/", view(self.report_view), name=f"{name}_report"),
            path("<path:object_id>/report.csv", view(self.report_csv_view),
                 name=f"{name}_report_csv"),
            *super().get_urls(),
        ]

    def _report_context(self, mailing: Mailing) -> dict[str, Any]:
        """The report section's context: the report, its charts and the URLs around it."""
        site = self.admin_site.name
        page_url = reverse("admin:communications_mailing_report", args=[mailing.pk],
                           current_app=site)
        return {**mailing_report_context(mailing_report(mailing=mailing)),
                "experiment": mailing_experiment(mailing=mailing),
                "page_url": page_url, "refresh_url": f"{page_url}?fragment=1",
                "refresh_seconds": self.report_refresh_seconds,
                "calendar_url": reverse("admin:communications_mailing_calendar",
                                        current_app=site)}

    def report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The mailing's report page; `?fragment=1` is its report section alone, which the page
        fetches again while the mailing is live."""
        # Not get_object(): the changelist's per-status counters would be read for nothing.
        mailing = (Mailing.objects.select_related("template", "gateway")
                   .filter(pk=unquote(object_id)).first())
        if mailing is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, mailing):
            raise PermissionDenied
        report = self._report_context(mailing)
        buttons = ([(name, change.label) for name, change in STATE_CHANGES.items()
                    if change.shown(mailing)]
                   if self.has_change_permission(request, mailing) else [])
        context = {**self.admin_site.each_context(request), **report, "opts": self.opts,
                   "mailing": mailing, "title": f"Report: {mailing}", "mailing_buttons": buttons,
                   "report_refresh_url": report["refresh_url"],
                   "report_refresh_seconds": report["refresh_seconds"]}
        page = "report_section" if request.GET.get("fragment") else "report"
        return TemplateResponse(request, f"admin/communications/mailing/{page}.html", context)

    def report_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The mailing's report as one CSV table (communications.selectors.reports_csv)."""
        from communications.selectors.reports_csv import (
            REPORT_CSV_HEADER,
            mailing_report_csv_rows,
        )
        from config.csv_export import csv_lines, csv_response

        mailing = Mailing.objects.select_related("template").filter(pk=unquote(object_id)).first()
        if mailing is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, mailing):
            raise PermissionDenied
        rows = mailing_report_csv_rows(mailing=mailing, report=mailing_report(mailing=mailing))
        return csv_response(csv_lines(REPORT_CSV_HEADER, rows),
                            filename=f"mailing-{mailing.pk}-report.csv")

    def calendar_view(self, request: HttpRequest) -> HttpResponse:
        """A month of the messaging calendar (`?month=YYYY-MM`, this month by default)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        asked, month = request.GET.get("month", ""), None
        try:
            month = parse_date(f"{asked}-01") if asked else None
        except ValueError:
            pass
        errors = {"month": "give the month as YYYY-MM"} if asked and month is None else {}
        month = month or timezone.localdate().replace(day=1)
        following = (month + timedelta(days=32)).replace(day=1)
        calendar = messaging_calendar(start=month, end=following - timedelta(days=1))
        names = {entry.id: entry.name for day in calendar.days for entry in day.mailings}
        cells: list[dict[str, Any] | None] = [None] * month.weekday() + [
            {"day": day, "pairs": [(names.get(pair.mailings[0]), names.get(pair.mailings[1]),
                                    pair.members) for pair in day.pairs]}
            for day in calendar.days]
        cells += [None] * (-len(cells) % 7)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": "Messaging calendar", "month": month, "errors": errors,
                   "previous_month": (month - timedelta(days=1)).replace(day=1),
                   "next_month": following, "time_zone": timezone.get_current_timezone_name(),
                   "weekday_names": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                   "weeks": [cells[start:start + 7] for start in range(0, len(cells), 7)]}
        return TemplateResponse(request, "admin/communications/mailing/calendar.html", context)

    # --- read-only fields and list columns --------------------------------------------------

    @admin.display(description="estimated cost")
    def cost_estimate(self, mailing: Mailing) -> str:
        if mailing.pk is None or mailing.state not in TESTABLE_STATES:
            return "—"
        return cost_estimate_html(mailing_cost_estimate(mailing=mailing))

    @admin.display(description="send a test")
    def test_send(self, mailing: Mailing) -> str:
        if mailing.pk is None or mailing.state not in TESTABLE_STATES:
            return "—"
        return render_to_string("admin/communications/mailing/test_send.html", {
            "form": MailingTestSendForm(prefix="test_send"), "button": TEST_SEND,
            "limit": TEST_RECIPIENTS_MAX})

    @admin.display(description="channel")
    def channel(self, mailing: Mailing) -> str:
        return mailing.channel or "—"

    @admin.display(description="audience size now")
    def audience_size(self, mailing: Mailing) -> str:
        if mailing.state not in EDITABLE_STATES:
            return "The audience was frozen when sending started: see the messages."
        if mailing_audience_errors(mailing=mailing):
            return "—"
        try:
            return f"{members_count(mailing_audience(mailing=mailing)):,}"
        except ValidationError as error:
            return "The target group's rules are invalid: " + validation_error_text(error)

    @admin.display(description="uploaded address list")
    def address_list_report(self, mailing: Mailing) -> str:
        report = mailing.static_list.address_report if mailing.static_list_id else None
        if not report:
            return "—"
        rows = [(label, f"{count:,}") for label, count in (
            ("Lines", report["total"]), ("Valid addresses", report["valid"]),
            ("— no member has them (not sent to)", report["unknown"]),
            ("Invalid lines", report["invalid"]), ("Repeated lines", report["duplicates"]),
            ("Members in the audience", mailing.static_list.size))]
        examples = format_html_join("", "<li>line {}: {} ({})</li>", (
            (bad["line"], bad["value"], bad["reason"]) for bad in report["invalid_examples"]))
        return format_html('<table class="address-list-report">{}</table><ul>{}</ul>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
                           examples)

    @admin.display(description="messages")
    def status_counts(self, mailing: Mailing) -> str:
        if mailing.pk is None:
            return "—"
        counts = mailing_status_counts(mailing=mailing)
        reasons = dict(Message.SkipReason.choices)
        rows: list[tuple[str, int]] = [("Total", counts["total"])]
        for status, label in Status.choices:
            rows.append((label, counts[status]))
            if status == Status.SKIPPED:
                rows += [(f"— {reasons.get(reason, reason or 'no reason')}", n)
                         for reason, n in sorted(counts["skipped_by_reason"].items())]
        return format_html(
            '<table class="mailing-status-counts">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="total")
    def total(self, mailing: Mailing) -> int:
        return sum(getattr(mailing, f"count_{status}") for status in Status.values)

    @admin.display(description="queued", ordering="count_queued")
    def queued(self, mailing: Mailing) -> int:
        return mailing.count_queued

    @admin.display(description="sent", ordering="count_sent")
    def sent(self, mailing: Mailing) -> int:
        return mailing.count_sent

    @admin.display(description="failed", ordering="count_failed")
    def failed(self, mailing: Mailing) -> int:
        return mailing.count_failed

    @admin.display(description="skipped", ordering="count_skipped")
    def skipped(self, mailing: Mailing) -> int:
        return mailing.count_skipped

    # --- changelist actions -----------------------------------------------------------------

    def _apply(self, request: HttpRequest, queryset: QuerySet[Mailing],
               service: Callable[..., Mailing], done: str) -> None:
        succeeded = 0
        for mailing in queryset:
            try:
                changed = service(mailing=mailing)
            except ValidationError as error:
                self.message_user(request, f"“{mailing}”: {validation_error_text(error)}",
                                  messages.ERROR)
            else:
                succeeded += 1
                self._budget_warn(request, changed)
                self.log_change(request, mailing, f"{done.capitalize()} the mailing.")
        if succeeded:
            self.message_user(request, f"{done.capitalize()} {succeeded} mailing(s).",
                              messages.SUCCESS)

    @admin.action(description="Schedule", permissions=["change"])
    def schedule_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, partial(mailing_schedule, by=request.user), "scheduled")

    @admin.action(description="Start now", permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, partial(mailing_start_now, by=request.user), "started")

    @admin.action(description="Approve (as the second person)", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, partial(mailing_approve, by=request.user), "approved")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("communications.approve_mailing")

    @admin.action(description="Pause", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_pause, "paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_resume, "resumed")

    @admin.action(description="Cancel", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_cancel, "cancelled")


