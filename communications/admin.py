from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from campaigns.selectors import target_group_size
from communications.gateways import GATEWAYS
from communications.models import FrequencyCap, Gateway, Mailing, Message, QuietHours, Template
from communications.renderers import MEMBER_PLACEHOLDERS
from communications.selectors import mailing_status_counts, mailings_with_counts
from communications.services import (
    mailing_cancel,
    mailing_pause,
    mailing_resume,
    mailing_schedulable_errors,
    mailing_schedule,
    mailing_start_now,
)

State = Mailing.State
Status = Message.Status
# From `sending` on the audience is frozen into messages, so the mailing no longer changes.
EDITABLE_STATES = (State.DRAFT, State.SCHEDULED)
CANCELLABLE_STATES = (State.DRAFT, State.SCHEDULED, State.PREPARING, State.SENDING,
                      State.PAUSED)
BUSY_STATES = (State.SCHEDULED, State.PREPARING, State.SENDING)
MAILING_FIELDS = ["name", "campaign", "target_group", "template", "gateway", "scheduled_at",
                  "priority", "defer_capped", "message_lifetime"]
# `name`s of the extra submit buttons on the mailing change page.
SCHEDULE, START_NOW = "_schedule", "_start_now"


@dataclass(frozen=True)
class _StateChange:
    """A button on the change page of a mailing that is no longer editable."""

    label: str
    states: tuple[str, ...]  # where the button shows
    change: Callable[..., Mailing]
    done: str  # logged and shown, after the mailing's name


STATE_CHANGES = {
    "_pause": _StateChange("Pause", (State.SENDING,), mailing_pause, "is paused."),
    "_resume": _StateChange("Resume", (State.PAUSED,), mailing_resume, "is sending again."),
    "_cancel": _StateChange("Cancel mailing", CANCELLABLE_STATES, mailing_cancel,
                            "is cancelled."),
}


def validation_error_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(texts)}" for field, texts in error.message_dict.items()
        )
    return " ".join(error.messages)


def _busy_states(mailings: QuerySet[Mailing]) -> set[str]:
    return set(
        mailings.filter(state__in=BUSY_STATES).order_by().values_list("state", flat=True)
        .distinct()
    )


# --- gateways and templates -----------------------------------------------------------------

def _provider_choices() -> list[tuple[str, str]]:
    return [(key, key) for key in sorted(GATEWAYS)]


class GatewayForm(forms.ModelForm):
    provider = forms.ChoiceField(
        choices=_provider_choices, help_text=Gateway._meta.get_field("provider").help_text
    )

    class Meta:
        model = Gateway
        fields = ["name", "channel", "provider", "settings", "sender", "price_per_message",
                  "is_active"]


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    form = GatewayForm
    list_display = ["name", "channel", "provider", "is_active", "price_per_message"]
    list_filter = ["channel", "provider", "is_active"]
    search_fields = ["name"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Gateway | None = None) -> Sequence[str]:
        # Scheduled and sending mailings were checked against this channel.
        if obj is not None and _busy_states(obj.mailings.all()):
            return ["channel"]
        return []


@admin.register(FrequencyCap)
class FrequencyCapAdmin(admin.ModelAdmin):
    """Caps across all mailings, checked when a batch is claimed (services.compliance)."""

    list_display = ["__str__", "channel", "max_messages", "period_length", "period_unit",
                    "is_active"]
    list_filter = ["channel", "is_active"]
    list_editable = ["is_active"]


@admin.register(QuietHours)
class QuietHoursAdmin(admin.ModelAdmin):
    """Per channel, in each member's time zone (services.compliance)."""

    list_display = ["channel", "starts_at", "ends_at", "is_active"]
    list_editable = ["is_active"]


TEMPLATE_FIELDS = ["name", "channel", "language", "subject", "body", "html_body"]
PLACEHOLDERS_HELP = "Placeholders: " + ", ".join(
    f"{{{{ member.{name} }}}}" for name in sorted(MEMBER_PLACEHOLDERS)
) + "; in email also {{ unsubscribe_url }} (the member's one-click unsubscribe link)."


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = TEMPLATE_FIELDS
        help_texts = {"subject": PLACEHOLDERS_HELP, "body": PLACEHOLDERS_HELP}


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["name", "channel", "language", "subject", "updated_at"]
    list_filter = ["channel", "language"]
    search_fields = ["name", "subject"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Template | None = None) -> Sequence[str]:
        busy = _busy_states(obj.mailings.all()) if obj is not None else set()
        # A sending mailing renders each batch from this row: an edit now would give members
        # of one mailing different texts.
        if State.SENDING in busy:
            return TEMPLATE_FIELDS
        if busy:
            return ["channel"]
        return []


# --- mailings -------------------------------------------------------------------------------

def _submit_action(request: HttpRequest) -> str | None:
    if request.method == "POST":
        for name in (SCHEDULE, START_NOW):
            if name in request.POST:
                return name
    return None


def _when(moment: Any) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


class MailingForm(forms.ModelForm):
    # Which button was pressed; MailingAdmin.get_form sets it on the per-request form class.
    submit_action: ClassVar[str | None] = None

    class Meta:
        model = Mailing
        fields = MAILING_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "priority" in self.fields:
            # Left empty (or posted by a client that predates it) means the default.
            self.fields["priority"].required = False

    def clean_priority(self) -> int:
        priority = self.cleaned_data.get("priority")
        return Mailing._meta.get_field("priority").default if priority is None else priority

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
        if self.submit_action in (SCHEDULE, START_NOW) or state == State.SCHEDULED:
            candidate = Mailing(**{name: cleaned.get(name)
                                   for name in ("target_group", "template", "gateway")})
            for field, text in mailing_schedulable_errors(mailing=candidate).items():
                self.add_error(field if field in self.fields else None, text)
        if (state == State.SCHEDULED and self.submit_action is None
                and "scheduled_at" in self.fields and not cleaned.get("scheduled_at")):
            self.add_error("scheduled_at", "A scheduled mailing needs a time; use “Start now” "
                                           "to send it at once.")
        return cleaned


@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    form = MailingForm
    list_display = ["name", "state", "channel", "scheduled_at", "total", "queued", "sent",
                    "failed", "skipped", "campaign"]
    list_filter = ["state", "campaign"]
    search_fields = ["name"]
    ordering = ["-id"]
    actions = ["schedule_selected", "start_selected", "pause_selected", "resume_selected",
               "cancel_selected"]
    always_readonly = ["state", "channel", "audience_size", "started_at", "completed_at",
                       "failure_reason", "created_by", "created_at", "status_counts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Mailing]:
        return mailings_with_counts()

    def get_fieldsets(self, request: HttpRequest, obj: Mailing | None = None) -> list[Any]:
        main = (None, {"fields": MAILING_FIELDS})
        if obj is None:
            return [main]
        return [
            main,
            ("State", {"fields": ["state", "channel", "audience_size", "started_at",
                                  "completed_at", "failure_reason", "created_by",
                                  "created_at"]}),
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
        form.submit_action = _submit_action(request)
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
        if form.submit_action == SCHEDULE:
            mailing = mailing_schedule(mailing=obj, at=obj.scheduled_at)
            self.message_user(request, f"“{mailing}” is scheduled for "
                                       f"{_when(mailing.scheduled_at)}.", messages.SUCCESS)
        elif form.submit_action == START_NOW:
            mailing_start_now(mailing=obj)
            self.message_user(request, f"“{obj}” is starting now.", messages.SUCCESS)

    def response_add(self, request: HttpRequest, obj: Mailing,
                     post_url_continue: str | None = None) -> HttpResponse:
        if _submit_action(request):
            return HttpResponseRedirect(
                reverse("admin:communications_mailing_change", args=[obj.pk])
            )
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Mailing) -> HttpResponse:
        if _submit_action(request):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
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
                        if obj.state in state_change.states]
        context["mailing_buttons"] = buttons
        if not editable:
            context.update(show_save=False, show_save_and_continue=False,
                           show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- read-only fields and list columns --------------------------------------------------

    @admin.display(description="channel")
    def channel(self, mailing: Mailing) -> str:
        return mailing.channel or "—"

    @admin.display(description="target group size now")
    def audience_size(self, mailing: Mailing) -> str:
        if mailing.target_group_id is None:
            return "—"
        if mailing.state not in EDITABLE_STATES:
            return "The audience was frozen when sending started: see the messages."
        try:
            return f"{target_group_size(target_group=mailing.target_group):,}"
        except ValidationError as error:
            return "The target group's rules are invalid: " + validation_error_text(error)

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
                service(mailing=mailing)
            except ValidationError as error:
                self.message_user(request, f"“{mailing}”: {validation_error_text(error)}",
                                  messages.ERROR)
            else:
                succeeded += 1
                self.log_change(request, mailing, f"{done.capitalize()} the mailing.")
        if succeeded:
            self.message_user(request, f"{done.capitalize()} {succeeded} mailing(s).",
                              messages.SUCCESS)

    @admin.action(description="Schedule", permissions=["change"])
    def schedule_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_schedule, "scheduled")

    @admin.action(description="Start now", permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_start_now, "started")

    @admin.action(description="Pause", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_pause, "paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_resume, "resumed")

    @admin.action(description="Cancel", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._apply(request, queryset, mailing_cancel, "cancelled")
