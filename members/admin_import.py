"""Import and export of members as CSV on the member changelist, as a ModelAdmin mixin.

`MemberImportExportMixin` adds two admin pages, `import/` (upload with dry run and skip bad
rows, then the counts and a table of bad rows) and `export/` (the changelist's current filter
and search as a streamed CSV), their buttons on the changelist, and the action "Export selected
members as CSV". The work is done by `members.imports` and `members.exports`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.contrib.admin.options import IS_POPUP_VAR, IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from members.exports import members_export_response
from members.imports import members_import
from members.models import Member

if TYPE_CHECKING:
    _ModelAdmin = ModelAdmin
else:
    _ModelAdmin = object

BAD_ROWS_SHOWN = 500  # a broken million-row file has too many to render; the count is shown


class MemberImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text=(
        "UTF-8, comma separated, a header row: external_id, profile columns (first_name, "
        "email, phone…), attr.<key> per custom attribute, consent.<channel> (granted / "
        "withdrawn), consent_text, consented_at. Members are matched by external_id."))
    dry_run = forms.BooleanField(required=False, label="Dry run",
                                 help_text="Check every row and count, import nothing.")
    skip_bad_rows = forms.BooleanField(required=False, label="Skip bad rows", help_text=(
        "Import the good rows. Otherwise any bad row stops the whole import."))


class MemberImportExportMixin(_ModelAdmin):
    """For the member ModelAdmin: `class MemberAdmin(MemberImportExportMixin, ModelAdmin)`."""

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="{}_{}_import".format(*info)),
            path("export/", view(self.export_view), name="{}_{}_export".format(*info)),
            *super().get_urls(),
        ]

    def _csv_url(self, name: str) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}",
                       current_app=self.admin_site.name)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        tools: list[tuple[str, str]] = []
        if self._may_import(request):
            tools.append((self._csv_url("import"), "Import CSV"))
        if self.has_view_permission(request):
            # The export takes the changelist's own filters and search.
            query = request.GET.urlencode()
            tools.append((self._csv_url("export") + (f"?{query}" if query else ""), "Export CSV"))
        return super().changelist_view(request, {**(extra_context or {}),
                                                 "member_csv_tools": tools})

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if (self.actions is not None and IS_POPUP_VAR not in request.GET
                and self.has_view_permission(request)):
            actions["export_selected_csv"] = (
                type(self).export_selected_csv, "export_selected_csv",
                "Export selected members as CSV")
        return actions

    def export_selected_csv(self, request: HttpRequest,
                            queryset: QuerySet[Member]) -> HttpResponse:
        return members_export_response(queryset=queryset, by=request.user)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not request.GET:
            return members_export_response(by=request.user)
        try:
            queryset = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            self.message_user(request, "The filter in the address is not valid.",
                              messages.ERROR)
            return HttpResponseRedirect(self._csv_url("changelist"))
        return members_export_response(queryset=queryset, by=request.user)

    def _may_import(self, request: HttpRequest) -> bool:
        # An import creates members as well as changing them (as the API's import asks).
        return self.has_add_permission(request) and self.has_change_permission(request)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self._may_import(request):
            raise PermissionDenied
        form = MemberImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            report = members_import(source=form.cleaned_data["file"],
                                    dry_run=form.cleaned_data["dry_run"],
                                    skip_bad_rows=form.cleaned_data["skip_bad_rows"],
                                    by=request.user)
            level = messages.SUCCESS if report.imported or (
                report.dry_run and not report.bad_rows) else messages.WARNING
            self.message_user(request, report.summary(), level)
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/import.html", {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import members",
            "form": form,
            "adminform": helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
            "report": report,
            "bad_rows": report.bad_rows[:BAD_ROWS_SHOWN] if report else [],
            "bad_rows_hidden": max(0, len(report.bad_rows) - BAD_ROWS_SHOWN) if report else 0,
            "changelist_url": self._csv_url("changelist"),
        })
