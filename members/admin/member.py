"""The member page: profile through `member_upsert`, consent history, support consent changes,
privacy export and erasure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from members.admin.common import (
    ERASED,
    ReasonForm,
    admin_form_wrap,
    form_errors_add,
    identifier_q,
    saved_adopt,
)
from members.admin_import import MemberImportExportMixin
from members.models import (
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    Device,
    Member,
    MessengerAccount,
    Purpose,
    SubscriptionCategory,
)
from members.selectors import consent_history
from members.services import (
    consent_record,
    member_data_export,
    member_erase,
    member_upsert,
)
from members.services.profiles import PROFILE_FIELDS, member_fields_clean


class _MemberValueFilter(admin.SimpleListFilter):
    """Choices are the values in use, cached for a few minutes: a DISTINCT over a million
    members is a full table scan, and the changelist would pay it on every page load."""

    def has_output(self) -> bool:
        # The cached choices may lag behind the table; a value given still filters.
        return True

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin
                ) -> list[tuple[str, str]]:
        field = self.parameter_name
        key = f"members.admin.member-{field}-values"
        values = cache.get(key)
        if values is None:
            values = list(Member.objects.exclude(**{field: ""}).order_by(field)
                          .values_list(field, flat=True).distinct())
            cache.set(key, values, timeout=600)
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


class LanguageFilter(_MemberValueFilter):
    title = "language"
    parameter_name = "language"


class CountryFilter(_MemberValueFilter):
    title = "country"
    parameter_name = "country"


class MemberAdminForm(forms.ModelForm):
    """Runs the profile through `member_fields_clean`, the validator the API and the import
    use, so a phone or a custom attribute means the same here; errors name the field."""

    class Meta:
        model = Member
        fields = ["external_id", *PROFILE_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        data = {name: cleaned[name] for name in PROFILE_FIELDS if name in cleaned}
        if "custom_attributes" in data:
            data["custom_attributes"] = self._attributes_change(data["custom_attributes"])
        try:
            cleaned.update(member_fields_clean(data))
        except ValidationError as error:
            form_errors_add(self, error)
        return cleaned

    def _attributes_change(self, edited: Any) -> Any:
        """The form edits the whole object but `member_upsert` merges: a key deleted here is
        sent as null, which removes it."""
        if edited is None:
            edited = {}
        if not isinstance(edited, dict):
            return edited
        stored = self.instance.custom_attributes if self.instance.pk else {}
        return {**{key: None for key in stored if key not in edited}, **edited}


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return False


class ConsentInline(_ReadOnlyInline):
    """Current consents: they change only through the ledger ("Change consent" above)."""

    model = Consent
    verbose_name_plural = "current consents"
    fields = ["channel", "purpose", "category", "state", "source", "recorded_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Consent]:
        return super().get_queryset(request).select_related("category")


class ConsentEventInline(_ReadOnlyInline):
    model = ConsentEvent
    verbose_name_plural = "consent history (newest first)"
    fields = ["recorded_at", "channel", "purpose", "category", "action", "source",
              "ip_address", "user_agent", "consent_text", "reason", "actor"]
    readonly_fields = fields
    ordering = ["-recorded_at", "-id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentEvent]:
        return super().get_queryset(request).select_related("category", "actor")


class _MemberAddressInline(admin.TabularInline):
    """Push devices and messenger accounts, edited in place while the member is not erased."""

    extra = 0
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2})}}

    def _editable(self, member: Member | None) -> bool:
        return member is None or member.status != ERASED

    def has_add_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


class DeviceInline(_MemberAddressInline):
    model = Device
    fields = ["platform", "app", "token", "is_active", "last_seen_at"]
    readonly_fields = ["last_seen_at"]


class MessengerAccountInline(_MemberAddressInline):
    model = MessengerAccount
    fields = ["network", "account_id", "is_active", "verified_at"]
    readonly_fields = ["verified_at"]


class ConsentChangeForm(forms.Form):
    channel = forms.ChoiceField(choices=[("", "---------"), *Channel.choices])
    purpose = forms.ChoiceField(choices=Purpose.choices, initial=Purpose.MARKETING)
    category = forms.ModelChoiceField(
        SubscriptionCategory.objects.all(), required=False,
        empty_label="— the whole channel —",
        help_text="Only for marketing: a kind of message the member takes or refuses.")
    action = forms.ChoiceField(
        choices=[(ConsentEvent.Action.GRANT, "Grant"), (ConsentEvent.Action.WITHDRAW, "Withdraw")],
        widget=forms.RadioSelect)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why it changes, e.g. “member called on 12 May, ticket 4711”. It is kept in "
                  "the consent history and the audit log.")


@admin.register(Member)
class MemberAdmin(MemberImportExportMixin, admin.ModelAdmin):
    form = MemberAdminForm
    list_display = ["external_id", "name", "email", "phone", "status", "tier", "language",
                    "created_at"]
    list_filter = ["status", LanguageFilter, CountryFilter]
    list_select_related = ["loyalty_account__tier"]
    # A term that looks like an identifier is looked up exactly (see get_search_results);
    # these fields serve the rest, which reads as a name.
    search_fields = ["first_name", "last_name"]
    search_help_text = ("Exact external id, email or phone (+49 151 …), or part of the first or "
                        "last name.")
    # Counting a million rows on every page load is the slowest part of the changelist.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["external_id", "status"]}),
        ("Person", {"fields": ["first_name", "last_name", "birth_date", "gender"]}),
        ("Contact", {"fields": ["email", "email_verified_at", "phone", "phone_verified_at",
                                "language", "timezone"]}),
        ("Location", {"fields": ["city", "region", "country", "latitude", "longitude"]}),
        ("Program", {"fields": ["registered_at", "registration_source",
                                "custom_attributes"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ConsentInline, ConsentEventInline, DeviceInline, MessengerAccountInline]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Member],
                           search_term: str) -> tuple[QuerySet[Member], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        identifier = identifier_q(term)
        if identifier is not None:
            return queryset.filter(identifier), False
        names, duplicates = super().get_search_results(request, queryset, term)
        if " " not in term:  # an external id without digits
            names = names | queryset.filter(external_id=term)
        return names, duplicates

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Member | None = None) -> Sequence[str]:
        # Verification is the member's own doing (double opt-in); the external id is how the
        # loyalty engine and `member_upsert` find the member.
        always = ["email_verified_at", "phone_verified_at", "created_at", "updated_at"]
        return always if obj is None else ["external_id", *always]

    def formfield_for_choice_field(self, db_field: models.Field, request: HttpRequest,
                                   **kwargs: Any) -> forms.Field:
        if db_field.name == "status":
            # Erasure is a request of its own ("Erase member"), not a status to pick.
            kwargs["choices"] = [(value, label) for value, label in Member.Status.choices
                                 if value != ERASED]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # An erased member stays only as an anonymous row for the counts; nothing changes it.
        if obj is not None and obj.status == ERASED:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # Members are erased, not deleted: the consent ledger keeps the proof of withdrawal.
        return False

    def save_model(self, request: HttpRequest, obj: Member, form: MemberAdminForm,
                   change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in PROFILE_FIELDS
                if name in form.cleaned_data}
        member, _ = member_upsert(external_id=obj.external_id, data=data)
        saved_adopt(obj, member)

    @admin.display(description="name", ordering="last_name")
    def name(self, member: Member) -> str:
        return member.full_name

    @admin.display(description="tier", ordering="loyalty_account__tier__rank")
    def tier(self, member: Member) -> str:
        account = getattr(member, "loyalty_account", None)
        return str(account.tier) if account is not None and account.tier_id else "—"

    # --- support and privacy pages ----------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/consent/", view(self.consent_change_view),
                 name="{}_{}_consent".format(*info)),
            path("<path:object_id>/personal-data/", view(self.personal_data_view),
                 name="{}_{}_personal_data".format(*info)),
            path("<path:object_id>/erase/", view(self.erase_view),
                 name="{}_{}_erase".format(*info)),
            *super().get_urls(),
        ]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any],
                           add: bool = False, change: bool = False, form_url: str = "",
                           obj: Member | None = None) -> HttpResponse:
        tools: list[tuple[str, str]] = []
        # Model-level permission: an erased member's page is read-only, yet their data can
        # still be downloaded.
        if obj is not None and super().has_change_permission(request, obj):
            if obj.status != ERASED:
                tools.append((self._url("consent", obj), "Change consent"))
            tools.append((self._url("personal_data", obj), "Download personal data"))
            if obj.status != ERASED:
                tools.append((self._url("erase", obj), "Erase member"))
        context["member_tools"] = tools
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _url(self, view: str, member: Member) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}",
                       args=[member.pk], current_app=self.admin_site.name)

    def _member_for(self, request: HttpRequest, object_id: str) -> Member:
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404(f"No member with id {object_id!r}.")
        if not super().has_change_permission(request, member):
            raise PermissionDenied
        return member

    def _render(self, request: HttpRequest, template: str, member: Member, form: forms.Form,
                **context: Any) -> TemplateResponse:
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": self.opts, "original": member,
            "change_url": self._url("change", member), "adminform": admin_form_wrap(form),
            "form": form, **context,
        })

    def consent_change_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member = self._member_for(request, object_id)
        form = ConsentChangeForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                event = consent_record(member=member, source=ConsentSource.SUPPORT,
                                       actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form_errors_add(form, error)
            else:
                what = f"{event.get_channel_display()} ({event.get_purpose_display().lower()}"
                what += f", {event.category})" if event.category else ")"
                self.message_user(request, f"{what} consent {event.get_action_display().lower()}"
                                           f" and recorded in the consent history.",
                                  messages.SUCCESS)
                return HttpResponseRedirect(self._url("change", member))
        return self._render(request, "admin/members/member/consent_change.html", member,
                            form, title="Change consent",
                            history=consent_history(member=member)[:10])

    def personal_data_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member = self._member_for(request, object_id)
        data = member_data_export(member=member, by=request.user)
        response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = (
            f'attachment; filename="member-{member.pk}-personal-data.json"')
        return response

    def erase_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member = self._member_for(request, object_id)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        form.fields["reason"].help_text = (
            "The request this fulfils, e.g. “erasure request by email of 3 May, ticket 4711”. "
            "Kept in the audit log.")
        if form.is_bound and form.is_valid():
            try:
                member_erase(member=member, by=request.user, reason=form.cleaned_data["reason"])
            except ValidationError as error:
                form_errors_add(form, error)
            else:
                # By id: the name is what was just erased.
                self.message_user(request, f"Member {member.pk} is erased.", messages.SUCCESS)
                return HttpResponseRedirect(self._url("change", member))
        return self._render(request, "admin/members/member/erase.html", member, form,
                            title="Erase member")


# --- consent ledger -------------------------------------------------------------------------

