"""Trigger mailings: the mailing and its trigger edited on one page while it is a draft, then
activated; paused, resumed and cancelled like any mailing (communications.services.triggers).

The trigger's own checks (event type known, conditions' shape, date rule's days, cancelling
events) run as the inline's model validation (`Trigger.clean`), so each shows at its field;
what needs the mailing and the trigger together runs when it is activated, and a refusal
rolls the whole save back.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from communications.admin.editing import State, validation_error_text
from communications.admin.mailings import STATE_CHANGES
from communications.models import Mailing, Message, Trigger, TriggerMailing
from communications.selectors import mailing_status_counts
from communications.services import triggers
from communications.services.mailings import mailing_content_errors
from communications.services.triggers import trigger_activate

TRIGGER_MAILING_FIELDS = list(triggers.TRIGGER_MAILING_FIELDS)
TRIGGER_FIELDS = list(triggers.TRIGGER_FIELDS)
ACTIVATE = "_activate"


class TriggerMailingForm(forms.ModelForm):
    # Whether "Save and activate" was pressed; set per request by the admin.
    activating: ClassVar[bool] = False

    class Meta:
        model = TriggerMailing
        fields = TRIGGER_MAILING_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk is not None and Mailing.objects.select_for_update().filter(
                pk=self.instance.pk).exclude(state=State.DRAFT).exists():
            raise ValidationError("This trigger mailing is active; it can no longer be changed.")
        if cleaned.get("target_group") and cleaned.get("static_list"):
            self.add_error("static_list", "Choose a target group or a static list, not both.")
        candidate = Mailing(template=cleaned.get("template"), gateway=cleaned.get("gateway"))
        for field, text in mailing_content_errors(mailing=candidate).items():
            self.add_error(field if field in self.fields else None, text)
        return cleaned


class TriggerInline(admin.StackedInline):
    model = Trigger
    fields = TRIGGER_FIELDS
    min_num = max_num = 1
    can_delete = False
    verbose_name = verbose_name_plural = (
        "Trigger: an event type (with its conditions, delay and cancelling events) or a "
        "date rule")

    def _editable(self, obj: Mailing | None) -> bool:
        return obj is None or obj.state == State.DRAFT

    def has_change_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)


@admin.register(TriggerMailing)
class TriggerMailingAdmin(admin.ModelAdmin):
    form = TriggerMailingForm
    inlines = [TriggerInline]
    change_form_template = "admin/communications/mailing/change_form.html"
    list_display = ["name", "state", "trigger_text", "channel_text", "started_at", "campaign"]
    list_filter = ["state", "campaign"]
    search_fields = ["name"]
    ordering = ["-id"]
    raw_id_fields = ["static_list"]
    always_readonly = ["state", "started_at", "completed_at", "status_counts", "report_link"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriggerMailing]:
        return (super().get_queryset(request).filter(kind=Mailing.Kind.TRIGGER)
                .select_related("trigger", "template", "campaign"))

    def get_fieldsets(self, request: HttpRequest, obj: Mailing | None = None) -> list[Any]:
        main = (None, {"fields": TRIGGER_MAILING_FIELDS})
        if obj is None:
            return [main]
        return [main, ("State", {"fields": ["state", "started_at", "completed_at"]}),
                ("Messages", {"fields": ["status_counts", "report_link"]})]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Mailing | None = None) -> Sequence[str]:
        if obj is not None and obj.state != State.DRAFT:
            return [*TRIGGER_MAILING_FIELDS, *self.always_readonly]
        return self.always_readonly

    def has_delete_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        if obj is not None and obj.state != State.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_form(self, request: HttpRequest, obj: Mailing | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        form.activating = request.method == "POST" and ACTIVATE in request.POST
        return form

    def save_model(self, request: HttpRequest, obj: TriggerMailing, form: TriggerMailingForm,
                   change: bool) -> None:
        if change:
            obj.save(update_fields=[name for name in form.fields
                                    if name in TRIGGER_MAILING_FIELDS])
        else:
            obj.kind, obj.created_by = Mailing.Kind.TRIGGER, request.user
            obj.save()

    def save_related(self, request: HttpRequest, form: TriggerMailingForm, formsets: Any,
                     change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not form.activating:
            return
        try:
            trigger_activate(mailing=form.instance)
        except ValidationError as error:
            transaction.set_rollback(True)
            self.message_user(request, "Not activated: " + validation_error_text(error),
                              messages.ERROR)
        else:
            self.message_user(request, f"“{form.instance}” is active: it answers what happens "
                                       f"from now on.", messages.SUCCESS)

    def response_add(self, request: HttpRequest, obj: Mailing,
                     post_url_continue: str | None = None) -> HttpResponse:
        if ACTIVATE in request.POST:
            return HttpResponseRedirect(f"../{obj.pk}/change/")
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Mailing) -> HttpResponse:
        if ACTIVATE in request.POST:
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST":
            for name, state_change in STATE_CHANGES.items():
                if name in request.POST:
                    mailing = self.get_object(request, object_id)
                    if mailing is None or not self.has_change_permission(request, mailing):
                        return HttpResponseRedirect(request.path)
                    try:
                        state_change.change(mailing=mailing)
                    except ValidationError as error:
                        self.message_user(request, validation_error_text(error),
                                          messages.ERROR)
                    else:
                        self.log_change(request, mailing, state_change.label)
                        self.message_user(request, f"“{mailing}” {state_change.done}",
                                          messages.SUCCESS)
                    return HttpResponseRedirect(request.path)
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any],
                           add: bool = False, change: bool = False, form_url: str = "",
                           obj: Mailing | None = None) -> HttpResponse:
        buttons = []
        if obj is None or obj.state == State.DRAFT:
            buttons.append((ACTIVATE, "Save and activate"))
        else:
            buttons += [(name, state_change.label)
                        for name, state_change in STATE_CHANGES.items()
                        if obj.state in state_change.states]
            context.update(show_save=False, show_save_and_continue=False,
                           show_save_and_add_another=False)
        context["mailing_buttons"] = buttons
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="trigger")
    def trigger_text(self, mailing: Mailing) -> str:
        trigger = Trigger.objects.filter(mailing=mailing).first()
        return str(trigger) if trigger else "—"

    @admin.display(description="channel")
    def channel_text(self, mailing: Mailing) -> str:
        return mailing.channel or "—"

    @admin.display(description="report")
    def report_link(self, mailing: Mailing) -> str:
        url = reverse("admin:communications_mailing_report", args=[mailing.pk],
                      current_app=self.admin_site.name)
        return format_html('<a href="{}">Delivery report and funnel</a>', url)

    @admin.display(description="messages")
    def status_counts(self, mailing: Mailing) -> str:
        counts = mailing_status_counts(mailing=mailing)
        rows = [("Total", counts["total"])] + [
            (label, counts[status]) for status, label in Message.Status.choices
            if counts[status]]
        return format_html('<table class="mailing-status-counts">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))
