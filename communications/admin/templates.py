"""Message templates, per channel and language, and their preview as a member would see them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from communications.admin.editing import (
    State,
    busy_states,
)
from communications.models import (
    Gateway,
    Mailing,
    Template,
)
from communications.previews import (
    SAMPLE_DEFAULTS,
    PreviewPerson,
    mailing_preview_member,
    mailing_template_gateway,
    preview_first_member,
    preview_mailings,
    preview_member_find,
    preview_person_of_member,
    preview_person_of_sample,
    template_preview,
)
from communications.renderers import MEMBER_PLACEHOLDERS

TEMPLATE_FIELDS = ["name", "channel", "language", "subject", "body", "mjml_body", "html_body",
                   "image_url", "link_url", "button_text", "push_data"]
PLACEHOLDERS_HELP = "Placeholders: " + ", ".join(
    f"{{{{ member.{name} }}}}" for name in sorted(MEMBER_PLACEHOLDERS)
) + "; in email also {{ unsubscribe_url }} (the member's one-click unsubscribe link)."
# A member's rendered message shows their name and addresses: choosing one is for those who
# may see members anyway (the marketer role previews with sample data).
MEMBER_VIEW_PERMISSION = "members.view_member"


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = TEMPLATE_FIELDS
        help_texts = {"subject": PLACEHOLDERS_HELP, "body": PLACEHOLDERS_HELP}


class TemplatePreviewForm(forms.Form):
    """Whom to preview the template as, and through which gateway. Every field is optional:
    an empty form previews as the first member (or sample data) without a gateway."""

    member = forms.CharField(
        required=False, max_length=254, label="Member",
        help_text="External id, email address or id. Empty: the first member (of the "
                  "mailing's audience, with a mailing), or the sample data when there is none.")
    gateway = forms.ModelChoiceField(
        Gateway.objects.none(), required=False, label="Through gateway",
        help_text="Shows its sender. Empty: the mailing's gateway, with a mailing.")
    mailing = forms.ModelChoiceField(Mailing.objects.none(), required=False,
                                     widget=forms.HiddenInput)
    first_name = forms.CharField(required=False, max_length=100, label="Sample first name")
    last_name = forms.CharField(required=False, max_length=100, label="Sample last name")
    email = forms.CharField(required=False, max_length=254, label="Sample email")
    phone = forms.CharField(required=False, max_length=32, label="Sample phone")
    external_id = forms.CharField(required=False, max_length=64, label="Sample external id")
    language = forms.CharField(required=False, max_length=8, label="Sample language")

    def __init__(self, *args: Any, template: Template, may_see_members: bool,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.template = template
        self.may_see_members = may_see_members
        self.fields["gateway"].queryset = (Gateway.objects.filter(channel=template.channel)
                                           .order_by("name"))
        self.fields["mailing"].queryset = preview_mailings(template=template)
        for name, default in SAMPLE_DEFAULTS.items():
            self.fields[name].widget.attrs["placeholder"] = default
        if not may_see_members:
            self.fields["member"].disabled = True
            self.fields["member"].help_text = ("Choosing a member needs the permission to "
                                               "view members; the preview uses sample data.")

    def sample_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in SAMPLE_DEFAULTS]

    def chooser_fields(self) -> list[forms.BoundField]:
        return [self["member"], self["gateway"]]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        key = (self.data.get("member") or "").strip()
        data["member_found"] = None
        if key and not self.may_see_members:
            self.add_error("member", "choosing a member needs the permission to view members")
        elif key:
            try:
                data["member_found"] = preview_member_find(key=key)
            except ValidationError as error:
                self.add_error("member", error.message_dict["member"])
        return data

    def person(self) -> tuple[PreviewPerson, str]:
        """Whom the valid form previews as, and a note on why when it was not chosen."""
        data = self.cleaned_data
        if data["member_found"] is not None:
            return preview_person_of_member(data["member_found"]), ""
        sample = {name: data.get(name) for name in SAMPLE_DEFAULTS}
        if any(sample.values()):
            return preview_person_of_sample(sample), ""
        if not self.may_see_members:
            return preview_person_of_sample(), ""
        mailing = data.get("mailing")
        if mailing is not None:
            member = mailing_preview_member(mailing=mailing)
            if member is not None:
                return preview_person_of_member(member), "a member of the mailing's audience"
            return preview_person_of_sample(), "the mailing's audience has no members yet"
        member = preview_first_member()
        if member is not None:
            return preview_person_of_member(member), "the first member"
        return preview_person_of_sample(), "there are no members yet"

    def chosen_gateway(self) -> Gateway | None:
        data = self.cleaned_data
        if data.get("gateway") is not None:
            return data["gateway"]
        if data.get("mailing") is not None:
            return mailing_template_gateway(mailing=data["mailing"], template=self.template)
        return None


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["name", "channel", "language", "subject", "updated_at", "preview"]
    list_filter = ["channel", "language"]
    search_fields = ["name", "subject"]
    change_form_template = "admin/communications/template/change_form.html"

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Template | None = None) -> Sequence[str]:
        busy = busy_states(obj.mailings.all()) if obj is not None else set()
        # A sending mailing renders each batch from this row: an edit now would give members
        # of one mailing different texts.
        if State.SENDING in busy:
            return TEMPLATE_FIELDS
        if busy:
            return ["channel"]
        return []

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:template_id>/preview/", view(self.preview_view),
                 name=f"{name}_preview"),
            *super().get_urls(),
        ]

    @admin.display(description="preview")
    def preview(self, template: Template) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_preview",
                      args=[template.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">Preview</a>', url)

    def preview_view(self, request: HttpRequest, template_id: int) -> HttpResponse:
        """The template rendered for a member (or sample data) as their channel shows it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        template = self.get_queryset(request).filter(pk=template_id).first()
        if template is None:
            raise Http404("no such template")
        may_see_members = request.user.has_perm(MEMBER_VIEW_PERMISSION)
        form = TemplatePreviewForm(request.GET, template=template,
                                   may_see_members=may_see_members)
        preview, why = None, ""
        if form.is_valid():
            person, why = form.person()
            preview = template_preview(template=template, person=person,
                                       gateway=form.chosen_gateway())
        mailing = form.cleaned_data.get("mailing") if form.is_valid() else None
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "original": template,
            "title": f"Preview “{template}”", "form": form, "preview": preview,
            "chosen_because": why, "mailing": mailing,
            "show_member_link": may_see_members, "program_name": settings.ENGAGE_PROGRAM_NAME,
            "language_differs": (preview is not None and not preview.person.is_sample
                                 and preview.person.context["language"]
                                 and preview.person.context["language"] != template.language),
        }
        return TemplateResponse(request, "admin/communications/template/preview.html", context)
