"""Marketer and support screens for members, consents, suppressions and the audit log.

Every state change goes through its service, as in the API: the member form saves through
`member_upsert`, a consent changes only through `consent_record` (source "support", with the
agent and a reason), and suppressions through `suppression_add` / `suppression_remove`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from members.filters import phone_or_none
from members.models import (
    AuditEntry,
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    CustomAttribute,
    Device,
    Member,
    MessengerAccount,
    Purpose,
    SubscriptionCategory,
    Suppression,
)
from members.selectors import consent_history
from members.services import (
    address_normalize,
    consent_record,
    member_data_export,
    member_erase,
    member_upsert,
    suppression_add,
    suppression_remove,
)
from members.services.profiles import PROFILE_FIELDS, member_fields_clean
from members.services.suppressions import SUPPRESSIBLE_CHANNELS

ERASED = Member.Status.ERASED


def form_errors_add(form: forms.BaseForm, error: ValidationError,
                    rename: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form fields it names, the rest above the form.

    A key such as `custom_attributes.size` lands on `custom_attributes`, naming the attribute;
    `rename` maps a service's key to the form's field.
    """
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for key, texts in error.message_dict.items():
        field, _, part = (rename or {}).get(key, key).partition(".")
        if field in form.fields:
            form.add_error(field, [f"{part}: {text}" for text in texts] if part else texts)
        elif key == NON_FIELD_ERRORS:
            form.add_error(None, texts)
        else:
            form.add_error(None, [f"{key}: {text}" for text in texts])


def _adopt(obj: models.Model, saved: models.Model) -> None:
    """The admin goes on with the form's instance (inlines, history, redirect) after
    `save_model`; make it the row the service saved."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def _admin_form(form: forms.Form) -> helpers.AdminForm:
    """A plain form laid out like the admin's own forms (admin/includes/fieldset.html)."""
    return helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {})


def _identifier_q(term: str, prefix: str = "") -> Q | None:
    """Exact lookups the indexes serve, for a term that looks like an identifier.

    None for a term that reads as a name. Identifiers are compared as stored (lower-case email,
    E.164 phone): the admin's `=field` search would use iexact, which no index serves.
    """
    if "@" in term:
        return Q(**{f"{prefix}email": term.lower()}) | Q(**{f"{prefix}external_id": term})
    if any(char.isdigit() for char in term):
        lookup = Q(**{f"{prefix}external_id": term})
        if phone := phone_or_none(term):
            lookup |= Q(**{f"{prefix}phone": phone})
        return lookup
    return None


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by their service (the ledger, the audit log): shown, never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MemberRowSearch:
    """Search rows of one member by the member's exact external id, email or phone."""

    search_fields = ["member__external_id"]
    search_help_text = "Exact external id, email or phone of the member."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(
            _identifier_q(term, "member__") or Q(member__external_id=term)), False


# --- members --------------------------------------------------------------------------------

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


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Kept in the audit log.")


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
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
        identifier = _identifier_q(term)
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
        _adopt(obj, member)

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
            "change_url": self._url("change", member), "adminform": _admin_form(form),
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

@admin.register(Consent)
class ConsentAdmin(MemberRowSearch, ReadOnlyAdmin):
    list_display = ["member", "channel", "purpose", "category", "state", "source",
                    "recorded_at"]
    list_filter = ["channel", "purpose", "state", "source"]
    list_select_related = ["member", "category"]
    show_full_result_count = False


@admin.register(ConsentEvent)
class ConsentEventAdmin(MemberRowSearch, ReadOnlyAdmin):
    list_display = ["recorded_at", "member", "channel", "purpose", "category", "action",
                    "source", "actor"]
    list_filter = ["channel", "action", "source"]
    list_select_related = ["member", "category", "actor"]
    show_full_result_count = False
    # Newest rows by id, which the primary key serves; ordering the whole ledger by time would
    # sort it on every page.
    ordering = ["-id"]


class KeyedAdmin(admin.ModelAdmin):
    """A row that imports, the API and stored data name by a key: the key is fixed once the
    row exists, or what names it would point at nothing."""

    key_field: ClassVar[str]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return [self.key_field] if obj is not None else []


@admin.register(SubscriptionCategory)
class SubscriptionCategoryAdmin(KeyedAdmin):
    key_field = "code"
    list_display = ["name", "code", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "code"]


class CustomAttributeForm(forms.ModelForm):
    class Meta:
        model = CustomAttribute
        fields = ["key", "label", "type", "choices"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        choices = cleaned.get("choices")
        if "choices" not in cleaned:
            return cleaned
        if cleaned.get("type") == CustomAttribute.Type.CHOICE:
            if not (isinstance(choices, list) and choices
                    and all(isinstance(choice, str) and choice.strip() for choice in choices)):
                self.add_error("choices", 'Give the allowed values as a list of texts, '
                                          'for example ["gold", "silver"].')
            elif len(set(choices)) != len(choices):
                self.add_error("choices", "Each allowed value once, please.")
        elif choices:
            self.add_error("choices", 'Only "one of a list" has choices; leave this empty.')
        else:
            cleaned["choices"] = []
        return cleaned


@admin.register(CustomAttribute)
class CustomAttributeAdmin(KeyedAdmin):
    form = CustomAttributeForm
    key_field = "key"
    list_display = ["key", "label", "type"]
    list_filter = ["type"]
    search_fields = ["key", "label"]


# --- suppressions ---------------------------------------------------------------------------

class SuppressionAddForm(forms.ModelForm):
    channel = forms.ChoiceField(choices=[(c.value, c.label) for c in SUPPRESSIBLE_CHANNELS])

    class Meta:
        model = Suppression
        fields = ["channel", "address", "reason", "note"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("channel") and cleaned.get("address"):
            try:
                cleaned["address"] = address_normalize(channel=cleaned["channel"],
                                                       address=cleaned["address"])
            except ValidationError as error:
                # The normalizers name the kind of address; this form calls it "address".
                form_errors_add(self, error, rename={"email": "address", "phone": "address"})
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionAddForm
    list_display = ["address", "channel", "reason", "source", "created_at", "created_by"]
    list_filter = ["channel", "reason"]
    list_select_related = ["created_by"]
    search_fields = ["address"]
    search_help_text = "Exact email address or phone number."
    show_full_result_count = False
    ordering = ["-id"]
    actions = ["lift_suppressions"]

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> list[str]:
        if obj is None:
            return ["channel", "address", "reason", "note"]
        return ["channel", "address", "reason", "source", "note", "created_at", "created_by"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Suppression],
                           search_term: str) -> tuple[QuerySet[Suppression], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(address__in={term.lower(), phone_or_none(term) or term}), False

    # A suppression is added once and never edited; lifting it needs a reason, so it is an
    # action with its own page instead of the delete button.
    def has_change_permission(self, request: HttpRequest,
                              obj: Suppression | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest,
                              obj: Suppression | None = None) -> bool:
        return False

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    def save_model(self, request: HttpRequest, obj: Suppression, form: SuppressionAddForm,
                   change: bool) -> None:
        suppression = suppression_add(
            channel=obj.channel, address=obj.address, reason=obj.reason, note=obj.note,
            source="admin", by=request.user)
        _adopt(obj, suppression)

    @admin.action(description="Lift suppression of the selected addresses",
                  permissions=["lift"])
    def lift_suppressions(self, request: HttpRequest,
                          queryset: QuerySet[Suppression]) -> TemplateResponse | None:
        form = ReasonForm(request.POST if "lift" in request.POST else None)
        form.fields["reason"].help_text = (
            "Why these addresses may be contacted again. Kept in the audit log.")
        if form.is_bound and form.is_valid():
            try:
                with transaction.atomic():
                    for suppression in queryset:
                        suppression_remove(suppression=suppression, by=request.user,
                                           reason=form.cleaned_data["reason"])
            except ValidationError as error:
                form_errors_add(form, error)
            else:
                self.message_user(request, f"Lifted {len(queryset)} suppression(s).",
                                  messages.SUCCESS)
                return None
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/suppression/lift.html", {
            **self.admin_site.each_context(request), "opts": self.opts,
            "title": "Lift suppressions", "form": form, "adminform": _admin_form(form),
            "suppressions": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })


# --- audit log ------------------------------------------------------------------------------

@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor", "member", "detail"]
    list_filter = ["action"]
    list_select_related = ["actor"]
    search_fields = ["member_id"]
    search_help_text = "Member id (the number in the address of the member's page)."
    show_full_result_count = False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[AuditEntry],
                           search_term: str) -> tuple[QuerySet[AuditEntry], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return (queryset.filter(member_id=int(term)) if term.isdigit() else queryset.none(),
                False)

    @admin.display(description="member", ordering="member_id")
    def member(self, entry: AuditEntry) -> str:
        if entry.member_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>',
                           reverse("admin:members_member_change", args=[entry.member_id]),
                           entry.member_id)
