from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

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
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from campaigns.selectors import members_count
from communications.address_lists import AddressListError, AddressListReport, address_list_read
from communications.charts import mailing_report_context
from communications.circuits import circuit_open_seconds
from communications.gateways import GATEWAYS
from communications.models import (
    CascadeStep,
    FrequencyCap,
    Gateway,
    Mailing,
    Message,
    QuietHours,
    Template,
)
from communications.renderers import MEMBER_PLACEHOLDERS
from communications.secrets import SecretsUnreadable, secret_setting_names
from communications.selectors import mailing_status_counts, mailings_with_counts
from communications.selectors.calendar import messaging_calendar
from communications.selectors.costs import mailing_cost_estimate
from communications.selectors.reports import mailing_report
from communications.services import (
    mailing_cancel,
    mailing_pause,
    mailing_resume,
    mailing_schedulable_errors,
    mailing_schedule,
    mailing_start_now,
)
from communications.services.audiences import (
    mailing_address_list_attach,
    mailing_audience,
    mailing_audience_errors,
)
from communications.services.cascade import Step, cascade_steps_problems
from communications.services.gateways import (
    TEST_TEXT_MAX,
    GatewayTestResult,
    gateway_health_check,
    gateway_test_send,
)
from communications.services.schedules import recurrence_rule
from communications.services.test_sends import (
    TEST_RECIPIENTS_MAX,
    TESTABLE_STATES,
    mailing_test_send,
    members_by_keys,
)

State = Mailing.State
Status = Message.Status
# From `sending` on the audience is frozen into messages, so the mailing no longer changes.
EDITABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING)
CANCELLABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING, State.PREPARING,
                      State.SENDING, State.PAUSED)
BUSY_STATES = (State.SCHEDULED, State.PREPARING, State.SENDING)
MAILING_FIELDS = ["name", "campaign", "target_group", "static_list", "member", "template",
                  "gateway", "track_engagement", "cascade_after", "scheduled_at",
                  "send_in_member_timezone", "recurrence", "priority", "defer_capped",
                  "message_lifetime"]
AUDIENCE_FIELDS = ("target_group", "static_list", "member")
SCHEDULE_FIELDS = ["scheduled_at", "send_in_member_timezone", "recurrence"]
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


# Form fields `secret_<setting>`: one password input per secret setting of any provider.
SECRET_FIELD = "secret_"
SECRET_SET_TEXT = "••• set: leave blank to keep it."


def _with_secret_fields(form_class: type[forms.ModelForm]) -> type[forms.ModelForm]:
    """Adds a password input for each secret setting any provider has (the admin shows a
    gateway those of its own provider); the secret is never rendered back into the page."""
    providers_of: dict[str, list[str]] = {}
    for provider in sorted(GATEWAYS):
        for name in secret_setting_names(provider):
            providers_of.setdefault(name, []).append(provider)
    for name, providers in providers_of.items():
        field = forms.CharField(
            required=False, strip=False, label=name.replace("_", " "),
            widget=forms.PasswordInput(render_value=False,
                                       attrs={"autocomplete": "new-password"}),
            help_text=f"Secret setting of {', '.join(providers)}, stored encrypted.")
        form_class.base_fields[SECRET_FIELD + name] = field
        form_class.declared_fields[SECRET_FIELD + name] = field
    return form_class


@_with_secret_fields
class GatewayForm(forms.ModelForm):
    provider = forms.ChoiceField(
        choices=_provider_choices, help_text=Gateway._meta.get_field("provider").help_text
    )
    secrets_clear = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Remove secrets",
        help_text="Secret settings to delete (to change one, type the new value above).")

    class Meta:
        model = Gateway
        fields = ["name", "channel", "provider", "settings", "sender", "price_per_message",
                  "is_active", "backup"]
        help_texts = {"settings": (
            "Provider settings as JSON, e.g. host, port, use_tls; rate_per_second caps what "
            "every worker together sends through this gateway. Passwords, keys and tokens go "
            "in the secret fields below (typed here, they are moved there when saved).")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            stored = set(self.instance.secret_names()) if self.instance.pk else set()
        except SecretsUnreadable:
            stored = set()
        for name, field in self.fields.items():
            if name.startswith(SECRET_FIELD):
                state = SECRET_SET_TEXT if name[len(SECRET_FIELD):] in stored else "Not set."
                field.help_text = f"{state} {field.help_text}"
        if "secrets_clear" in self.fields:
            self.fields["secrets_clear"].choices = [(name, name) for name in sorted(stored)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        typed = {name[len(SECRET_FIELD):]: value for name, value in cleaned.items()
                 if name.startswith(SECRET_FIELD) and value}
        clear = cleaned.get("secrets_clear") or []
        if typed or clear:
            # On the instance before the model's clean(), which validates the settings the
            # adapter will get: plain and secret together.
            try:
                self.instance.secrets_set(typed, clear=clear)
            except SecretsUnreadable as exc:
                raise ValidationError(str(exc)) from exc
        return cleaned


class GatewayTestSendForm(forms.Form):
    address = forms.CharField(
        max_length=254, help_text="An email address, a phone number with its country code "
                                  "(+…) or a push token: what the gateway's channel sends to.")
    subject = forms.CharField(max_length=200, required=False,
                              help_text="Email and push; blank: “Test of gateway <name>”.")
    text = forms.CharField(max_length=TEST_TEXT_MAX, widget=forms.Textarea(attrs={"rows": 4}))


CHECK_HEALTH = "_check_health"


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    form = GatewayForm
    list_display = ["name", "channel", "provider", "is_active", "price_per_message", "circuit",
                    "health"]
    list_filter = ["channel", "provider", "is_active"]
    search_fields = ["name"]
    actions = ["check_health_now"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Gateway | None = None) -> Sequence[str]:
        tools = ["health", "gateway_tools"] if obj is not None else []
        # Scheduled and sending mailings were checked against this channel.
        if obj is not None and _busy_states(obj.mailings.all()):
            return ["channel", "circuit", *tools]
        return ["circuit", *tools]

    def get_fields(self, request: HttpRequest, obj: Gateway | None = None) -> Sequence[str]:
        """A new gateway gets every provider's secret fields, an existing one its provider's
        (and the remove box once it has any)."""
        fields = list(super().get_fields(request, obj))
        if obj is None:
            return [name for name in fields if name != "secrets_clear"]
        own = set(secret_setting_names(obj.provider))
        try:
            has_secrets = bool(obj.secret_names())
        except SecretsUnreadable:
            has_secrets = False
        return [name for name in fields
                if (not name.startswith(SECRET_FIELD) or name[len(SECRET_FIELD):] in own)
                and (name != "secrets_clear" or has_secrets)]

    def get_urls(self) -> list[URLPattern]:
        view, name = self.admin_site.admin_view, f"{self.opts.app_label}_{self.opts.model_name}"
        return [path("<path:object_id>/send-test/", view(self.send_test_view),
                     name=f"{name}_send_test"),
                *super().get_urls()]

    @admin.action(description="Check health now")
    def check_health_now(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> None:
        checked = [gateway_health_check(gateway=gateway) for gateway in queryset]
        failing = [gateway.name for gateway in checked if not gateway.last_health_ok]
        if failing:
            self.message_user(request, f"{len(checked)} gateway(s) checked; failing: "
                                       f"{', '.join(failing)}.", messages.WARNING)
        else:
            self.message_user(request, f"{len(checked)} gateway(s) checked, all healthy.")

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send one message through the gateway now (and check its health), with the
        provider's classified answer."""
        gateway = self.get_object(request, unquote(object_id))
        if gateway is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, gateway):
            raise PermissionDenied
        form, result = GatewayTestSendForm(), None
        if request.method == "POST" and CHECK_HEALTH in request.POST:
            gateway_health_check(gateway=gateway)
            self.message_user(request, f"Health: {'ok' if gateway.last_health_ok else 'failing'}"
                                       f" — {gateway.last_health_detail}",
                              messages.SUCCESS if gateway.last_health_ok else messages.WARNING)
            return HttpResponseRedirect(request.path)
        if request.method == "POST":
            form = GatewayTestSendForm(request.POST)
            if form.is_valid():
                result = self._test_send(request, gateway, form)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "original": gateway, "title": f"Send a test: {gateway.name}", "form": form,
                   "result": result, "health": self.health(gateway),
                   "check_health": CHECK_HEALTH}
        return TemplateResponse(request, "admin/communications/gateway/send_test.html", context)

    def _test_send(self, request: HttpRequest, gateway: Gateway,
                   form: GatewayTestSendForm) -> GatewayTestResult | None:
        try:
            result = gateway_test_send(gateway=gateway, address=form.cleaned_data["address"],
                                       subject=form.cleaned_data["subject"],
                                       text=form.cleaned_data["text"], by=request.user)
        except ValidationError as error:
            for field, texts in error.message_dict.items():
                form.add_error(field if field in form.fields else None, texts)
            return None
        self.log_change(request, gateway, f"Test send to {result.message.address}: "
                                          f"{result.message.status}")
        return result

    @admin.display(description="health")
    def health(self, gateway: Gateway) -> str:
        if gateway.last_health_at is None:
            return "not checked yet"
        state = "ok" if gateway.last_health_ok else "failing"
        return format_html('<span class="gateway-health gateway-health-{}" title="{}">{}</span>'
                           " · {} ago · {}", state, gateway.last_health_detail, state,
                           timesince(gateway.last_health_at), gateway.last_health_detail)

    @admin.display(description="test and health")
    def gateway_tools(self, gateway: Gateway) -> str:
        url = reverse("admin:communications_gateway_send_test", args=[gateway.pk],
                      current_app=self.admin_site.name)
        return format_html('<a class="button" href="{}">Send a test / check health now</a>',
                           url)

    @admin.display(description="circuit")
    def circuit(self, gateway: Gateway) -> str:
        if gateway.pk is None:
            return "—"
        remaining = circuit_open_seconds(gateway_id=gateway.pk)
        if not remaining:
            return "closed"
        via = f", sending through {gateway.backup}" if gateway.backup_id else ""
        return f"open for {remaining:.0f} s more{via}"


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


TEMPLATE_FIELDS = ["name", "channel", "language", "subject", "body", "mjml_body", "html_body"]
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


def _before_scheduling(mailing: Mailing) -> list[Any]:
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


class CascadeStepInline(admin.TabularInline):
    """The further channels of the cascade, tried in order after the mailing's own."""

    model = CascadeStep
    formset = CascadeStepFormSet
    extra = 0
    fields = ["position", "template", "gateway"]
    verbose_name = "next channel of the cascade"
    verbose_name_plural = ("Channel cascade: members the mailing's own channel cannot reach "
                           "get the next channel (see “cascade after”)")

    def _editable(self, obj: Mailing | None) -> bool:
        return obj is None or obj.state in EDITABLE_STATES

    def has_add_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Mailing | None = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    form = MailingForm
    inlines = [CascadeStepInline]
    list_display = ["name", "state", "channel", "scheduled_at", "total", "queued", "sent",
                    "failed", "skipped", "campaign"]
    list_filter = ["state", "campaign"]
    search_fields = ["name"]
    ordering = ["-id"]
    actions = ["schedule_selected", "start_selected", "pause_selected", "resume_selected",
               "cancel_selected"]
    always_readonly = ["state", "channel", "audience_size", "started_at", "completed_at",
                       "failure_reason", "created_by", "created_at", "status_counts",
                       "address_list_report", "recurring_parent", "cost_estimate",
                       "test_send"]
    raw_id_fields = ["member"]
    # The standard list with a link to the messaging calendar.
    change_list_template = "admin/communications/mailing/calendar_changelist.html"
    report_refresh_seconds = 5

    def get_queryset(self, request: HttpRequest) -> QuerySet[Mailing]:
        return mailings_with_counts()

    def get_fieldsets(self, request: HttpRequest, obj: Mailing | None = None) -> list[Any]:
        main = (None, {"fields": [name for name in MAILING_FIELDS if name not in AUDIENCE_FIELDS
                                  and name not in SCHEDULE_FIELDS]})
        audience = ("Audience: one of a target group, a static list, a member or an uploaded "
                    "address list", {"fields": [*AUDIENCE_FIELDS, "address_list",
                                                "address_region"]})
        schedule = ("When", {"fields": SCHEDULE_FIELDS})
        if obj is None:
            return [main, audience, schedule]
        if obj.state not in EDITABLE_STATES:
            audience = (audience[0], {"fields": [*AUDIENCE_FIELDS, "address_list_report"]})
        else:
            audience[1]["fields"].append("address_list_report")
        return [
            main, audience, schedule, *_before_scheduling(obj),
            ("State", {"fields": ["state", "channel", "audience_size", "recurring_parent",
                                  "started_at", "completed_at", "failure_reason",
                                  "created_by", "created_at"]}),
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
                mailing = mailing_schedule(mailing=obj, at=obj.scheduled_at)
                self.message_user(request, f"“{mailing}” is scheduled for "
                                           f"{_when(mailing.scheduled_at)}.", messages.SUCCESS)
            elif form.submit_action == START_NOW:
                mailing_start_now(mailing=obj)
                self.message_user(request, f"“{obj}” is starting now.", messages.SUCCESS)
        except ValidationError as error:
            transaction.set_rollback(True)
            self.message_user(request, "Not scheduled: " + validation_error_text(error),
                              messages.ERROR)

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
                        if obj.state in state_change.states]
        context["mailing_buttons"] = buttons
        if obj is not None and obj.state not in EDITABLE_STATES:
            context["mailing_report"] = self._report_context(obj)
        if not editable:
            context.update(show_save=False, show_save_and_continue=False,
                           show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the report and the calendar --------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view, name = self.admin_site.admin_view, f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("calendar/", view(self.calendar_view), name=f"{name}_calendar"),
            path("<path:object_id>/report/", view(self.report_view), name=f"{name}_report"),
            *super().get_urls(),
        ]

    def _report_context(self, mailing: Mailing) -> dict[str, Any]:
        """The report section's context: the report, its charts and the URLs around it."""
        site = self.admin_site.name
        page_url = reverse("admin:communications_mailing_report", args=[mailing.pk],
                           current_app=site)
        return {**mailing_report_context(mailing_report(mailing=mailing)),
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
                    if mailing.state in change.states]
                   if self.has_change_permission(request, mailing) else [])
        context = {**self.admin_site.each_context(request), **report, "opts": self.opts,
                   "mailing": mailing, "title": f"Report: {mailing}", "mailing_buttons": buttons,
                   "report_refresh_url": report["refresh_url"],
                   "report_refresh_seconds": report["refresh_seconds"]}
        page = "report_section" if request.GET.get("fragment") else "report"
        return TemplateResponse(request, f"admin/communications/mailing/{page}.html", context)

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
        estimate = mailing_cost_estimate(mailing=mailing)
        for channel in estimate["channels"]:  # money as written: 0.15, not 0.15000
            for key in ("price_per_message", "cost"):
                if channel[key] is not None:
                    channel[key] = f"{channel[key].normalize():f}"
        return render_to_string("admin/communications/mailing/estimate.html",
                                {"estimate": estimate})

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
