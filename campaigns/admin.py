from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from campaigns import admin_views, services
from campaigns.models import Campaign, PromoContent, StaticList, TargetGroup
from campaigns.report import campaign_credits_csv, campaign_report_context, campaign_report_csv
from campaigns.rules import rules_error_lines
from campaigns.selectors import (
    offer_status,
    offer_status_q,
    offers_with_counts,
    target_group_members,
    target_group_size,
)
from campaigns.selectors_metrics import campaign_lifts, campaign_metrics
from campaigns.selectors_spend import (
    budget_remaining,
    campaign_channels,
    campaign_spent,
    campaigns_with_spend,
)
from config.csv_export import csv_response
from members.exports import members_export_response
from members.models import Channel

RULES_HELP = (
    "Build the rules above; they are kept as the JSON tree below (docs/target-groups.md), "
    'which can also be edited by hand: {"and": [...]}, {"or": [...]}, {"not": ...} around '
    'conditions such as {"field": "orders_count", "op": "range", "value": [2, null], '
    '"days": 90}. No rules selects every member.'
)


class TargetGroupForm(forms.ModelForm):
    class Meta:
        model = TargetGroup
        fields = ["name", "description", "rules"]
        help_texts = {"rules": RULES_HELP}
        # The rule builder (campaigns/static/campaigns/rule_builder.js) mounts on this textarea
        # and writes the tree into it; without JavaScript it is the editor itself.
        widgets = {"rules": forms.Textarea(attrs={
            "rows": 8, "cols": 80, "spellcheck": "false", "data-rule-builder": ""})}

    def clean_rules(self) -> Any:
        # An emptied textarea (or `null`) means no rules; the column itself is never NULL.
        rules = self.cleaned_data["rules"]
        return {} if rules is None else rules


def _links(rows: Any, view: str) -> str:
    if not rows:
        return "—"
    # Bandit B308 reviewed: the separator is a constant; format_html_join escapes every value.
    return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>{}', (  # nosec B308
        (reverse(view, args=[row.pk]), str(row), suffix) for row, suffix in rows))


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "owner", "starts_on", "ends_on", "budget_shown",
                    "spent_shown", "remaining_shown", "created_at"]
    list_filter = ["status", "owner"]
    list_select_related = ["owner"]
    search_fields = ["name", "goal"]
    date_hierarchy = "starts_on"
    fields = ["name", "goal", "owner", "status", "starts_on", "ends_on", "budget", "currency",
              "attribution_touch", "attribution_window_days", "report_link",
              "spent_shown", "remaining_shown", "channel_mix", "regular_mailings",
              "trigger_mailings", "promo_content", "created_at"]
    readonly_fields = ["report_link", "spent_shown", "remaining_shown", "channel_mix",
                       "regular_mailings", "trigger_mailings", "promo_content", "created_at"]

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:campaign_id>/report/", view(self.report_view),
                 name=f"{prefix}_report"),
            path("<int:campaign_id>/report.csv", view(self.report_csv_view),
                 name=f"{prefix}_report_csv"),
            path("<int:campaign_id>/credits.csv", view(self.credits_csv_view),
                 name=f"{prefix}_credits_csv"),
            *super().get_urls(),
        ]

    def _campaign_or_denied(self, request: HttpRequest, campaign_id: int) -> Campaign:
        campaign = self.get_object(request, str(campaign_id))
        if campaign is None:
            raise Http404("no such campaign")
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def report_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign_or_denied(request, campaign_id)
        metrics = campaign_metrics(campaign)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": f"Report: {campaign.name}",
                   **campaign_report_context(campaign, metrics,
                                             campaign_lifts(campaign, metrics))}
        return TemplateResponse(request, "admin/campaigns/campaign/report.html", context)

    def report_csv_view(self, request: HttpRequest, campaign_id: int) -> HttpResponseBase:
        campaign = self._campaign_or_denied(request, campaign_id)
        metrics = campaign_metrics(campaign)
        return csv_response(campaign_report_csv(metrics, campaign_lifts(campaign, metrics)),
                            filename=f"campaign-{campaign.pk}-report.csv")

    def credits_csv_view(self, request: HttpRequest, campaign_id: int) -> HttpResponseBase:
        campaign = self._campaign_or_denied(request, campaign_id)
        return csv_response(campaign_credits_csv(campaign),
                            filename=f"campaign-{campaign.pk}-credited-orders.csv")

    @admin.display(description="report")
    def report_link(self, campaign: Campaign) -> str:
        if not campaign.pk:
            return "—"
        return format_html(
            '<a href="{}">Spend, reach, credited orders, revenue and ROI, with charts</a>',
            reverse("admin:campaigns_campaign_report", args=[campaign.pk]))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        # The page's spend and channels come with its rows: one query, none per campaign.
        return campaigns_with_spend(super().get_queryset(request))

    @admin.display(description="budget", ordering="budget")
    def budget_shown(self, campaign: Campaign) -> str:
        return "—" if campaign.budget is None else f"{campaign.budget:,.2f} {campaign.currency}"

    @admin.display(description="spend", ordering="spent")
    def spent_shown(self, campaign: Campaign) -> str:
        return f"{campaign_spent(campaign):,.2f} {campaign.currency}" if campaign.pk else "—"

    @admin.display(description="remaining")
    def remaining_shown(self, campaign: Campaign) -> str:
        if not campaign.pk:
            return "—"
        left = budget_remaining(budget=campaign.budget, spent=campaign_spent(campaign))
        if left is None:
            return "no budget"
        text = f"{left:,.2f} {campaign.currency}"
        return format_html('<strong class="errornote">{}</strong>', text) if left <= 0 else text

    @admin.display(description="channel mix")
    def channel_mix(self, campaign: Campaign) -> str:
        channels = campaign_channels(campaign) if campaign.pk else []
        labels = dict(Channel.choices)
        return ", ".join(labels.get(channel, channel) for channel in channels) or "—"

    def _mailings(self, campaign: Campaign, kind: str, view: str) -> str:
        if not campaign.pk:
            return "—"
        mailings = (campaign.mailings.filter(kind=kind).select_related("template")
                    .order_by("-pk"))
        return _links([(m, f" · {m.template.channel if m.template_id else '?'} · "
                           f"{m.get_state_display()}") for m in mailings], view)

    @admin.display(description="mailings")
    def regular_mailings(self, campaign: Campaign) -> str:
        return self._mailings(campaign, "regular", "admin:communications_mailing_change")

    @admin.display(description="trigger mailings")
    def trigger_mailings(self, campaign: Campaign) -> str:
        return self._mailings(campaign, "trigger", "admin:communications_triggermailing_change")

    @admin.display(description="promo content")
    def promo_content(self, campaign: Campaign) -> str:
        if not campaign.pk:
            return "—"
        return _links([(offer, f" · {offer_status(offer)}")
                       for offer in campaign.offers.order_by("-pk")],
                      "admin:campaigns_promocontent_change")


@admin.register(TargetGroup)
class TargetGroupAdmin(admin.ModelAdmin):
    form = TargetGroupForm
    list_display = ["name", "description", "is_watched", "updated_at"]
    list_filter = ["is_watched"]
    search_fields = ["name", "description"]
    readonly_fields = ["audience_size", "is_watched", "watched_since", "created_at",
                       "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "rules"]}),
        ("Audience", {"fields": ["audience_size", "is_watched", "watched_since", "created_at",
                                 "updated_at"]}),
    ]
    actions = ["freeze", "export_members", "watch", "unwatch"]

    @admin.action(description="Freeze into a static list", permissions=["change"])
    def freeze(self, request: HttpRequest, queryset: QuerySet[TargetGroup]) -> None:
        for group in queryset:
            try:
                frozen = services.target_group_freeze(target_group=group)
            except ValidationError as error:
                self.message_user(request, f"{group}: {'; '.join(error.messages)}",
                                  messages.ERROR)
                continue
            self.message_user(request, f"{group}: {frozen.size:,} members frozen into "
                                       f"“{frozen.name}”.", messages.SUCCESS)

    @admin.action(description="Export members as CSV (one group)", permissions=["view_members"])
    def export_members(self, request: HttpRequest,
                       queryset: QuerySet[TargetGroup]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one target group to export.",
                              messages.ERROR)
            return None
        group = queryset.get()
        return members_export_response(queryset=target_group_members(target_group=group),
                                       by=request.user,
                                       filename=f"target-group-{group.pk}.csv")

    def has_view_members_permission(self, request: HttpRequest) -> bool:
        # The export lists members' addresses: for those who may see members anyway.
        return request.user.has_perm("members.view_member")

    @admin.action(description="Watch: emit entered / left events as members change",
                  permissions=["change"])
    def watch(self, request: HttpRequest, queryset: QuerySet[TargetGroup]) -> None:
        for group in queryset:
            services.target_group_watch(target_group=group)
        self.message_user(request, f"Watching {queryset.count()} target group(s).",
                          messages.SUCCESS)

    @admin.action(description="Stop watching", permissions=["change"])
    def unwatch(self, request: HttpRequest, queryset: QuerySet[TargetGroup]) -> None:
        for group in queryset:
            services.target_group_unwatch(target_group=group)
        self.message_user(request, f"Stopped watching {queryset.count()} target group(s).",
                          messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("fields/", view(self.rule_fields_view), name=self._url_name("rule_fields")),
            path("preview/", view(self.rules_preview_view),
                 name=self._url_name("rules_preview")),
            *super().get_urls(),
        ]

    def _url_name(self, suffix: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def rule_fields_view(self, request: HttpRequest) -> JsonResponse:
        return admin_views.rule_fields(request, model_admin=self)

    def rules_preview_view(self, request: HttpRequest) -> JsonResponse:
        return admin_views.rules_preview(request, model_admin=self)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: dict[str, Any] | None = None,
                        ) -> HttpResponse:
        context = {**(extra_context or {}), "rule_builder": self._rule_builder_config(object_id)}
        return super().changeform_view(request, object_id, form_url, context)

    def _rule_builder_config(self, object_id: str | None) -> dict[str, Any]:
        """What the builder's script needs, rendered into the page as JSON."""
        site = self.admin_site.name
        try:
            member_url = reverse("admin:members_member_change", args=["__id__"],
                                 current_app=site)
        except NoReverseMatch:  # an admin site without members: the sample is not linked
            member_url = None
        return {
            "fieldsUrl": reverse(f"admin:{self._url_name('rule_fields')}", current_app=site),
            "previewUrl": reverse(f"admin:{self._url_name('rules_preview')}", current_app=site),
            # The group being edited: a reference back to it is refused as a cycle.
            "targetGroupId": int(object_id) if object_id and object_id.isdigit() else None,
            "memberUrl": member_url,
            "channels": [{"value": value, "label": str(label)} for value, label in
                         Channel.choices],
        }

    @admin.display(description="members matching now")
    def audience_size(self, target_group: TargetGroup) -> str:
        if target_group.pk is None:
            return "Not saved yet: “Preview audience” above counts the rules as they stand."
        try:
            size = target_group_size(target_group=target_group)
        except ValidationError as error:
            # Reached when the form re-renders rejected rules, or for rules stored another way.
            return "The rules are invalid: " + "; ".join(rules_error_lines(error))
        return f"{size:,}"


class StaticListUploadForm(forms.ModelForm):
    """A new static list from a CSV of external ids (an `external_id` column, or the first)."""

    file = forms.FileField(help_text="CSV of external ids: an external_id column, or the first "
                                     "column. Unknown ids are refused and nothing is saved.")

    class Meta:
        model = StaticList
        fields = ["name", "description"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        upload = data.get("file")
        if upload is None or self.errors:
            return data
        # The list is written here, through its service, so that unknown ids become errors on
        # this form; the admin's add view runs in one transaction with it.
        try:
            external_ids = services.static_list_ids_read(upload.read())
            self.instance = services.static_list_create(
                name=data["name"], description=data.get("description", ""),
                external_ids=external_ids)
        except ValidationError as error:
            for field, texts in error.message_dict.items():
                self.add_error("file" if field not in ("name",) else field, texts)
        return data

    def save(self, commit: bool = True) -> StaticList:
        return self.instance  # written by static_list_create in clean()

    def save_m2m(self) -> None:
        pass


@admin.register(StaticList)
class StaticListAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "size", "frozen_from", "taken_at"]
    list_filter = ["source"]
    search_fields = ["name", "description"]
    readonly_fields = ["source", "frozen_from", "taken_at", "size", "created_at"]

    def get_form(self, request: HttpRequest, obj: StaticList | None = None,
                 **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = StaticListUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: StaticList | None = None) -> list[str]:
        if obj is None:
            return ["name", "description", "file"]
        return ["name", "description", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: StaticList, form: Any,
                   change: bool) -> None:
        if change:  # only the name and description change after the upload
            super().save_model(request, obj, form, change)


# --- promo content ---------------------------------------------------------------------------

OFFER_STATUSES = [("scheduled", "Scheduled"), ("showing", "Showing"), ("ended", "Ended"),
                  ("off", "Switched off")]


class OfferStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return OFFER_STATUSES

    def queryset(self, request: HttpRequest,
                 queryset: QuerySet[PromoContent]) -> QuerySet[PromoContent]:
        if self.value() in dict(OFFER_STATUSES):
            return queryset.filter(offer_status_q(self.value()))
        return queryset


@admin.register(PromoContent)
class PromoContentAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "placement", "audience", "campaign", "priority",
                    "starts_at", "ends_at", "views", "clicks", "click_rate", "preview"]
    list_filter = [OfferStatusFilter, "placement", "is_active", "campaign", "target_group"]
    list_select_related = ["campaign", "target_group"]
    search_fields = ["title", "text"]
    autocomplete_fields = ["campaign", "target_group"]
    readonly_fields = ["status", "shown_from", "views", "clicks", "click_rate", "created_at",
                       "updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "text", "image_url", "link_label", "link_url"]}),
        ("Where and to whom", {"fields": ["placement", "target_group", "campaign", "priority",
                                          "is_active"]}),
        ("When", {"fields": ["starts_at", "ends_at", "show_days_before", "shown_from",
                             "status"]}),
        ("Counts", {"fields": ["views", "clicks", "click_rate", "created_at", "updated_at"]}),
    ]
    change_form_template = "admin/campaigns/promocontent/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromoContent]:
        return offers_with_counts(super().get_queryset(request))

    def save_model(self, request: HttpRequest, obj: PromoContent, form: Any,
                   change: bool) -> None:
        services.promo_content_save(offer=obj)

    @admin.display(description="status")
    def status(self, offer: PromoContent) -> str:
        if offer.pk is None:
            return "-"
        return dict(OFFER_STATUSES)[offer_status(offer)]

    @admin.display(description="audience", ordering="target_group__name")
    def audience(self, offer: PromoContent) -> str:
        return str(offer.target_group) if offer.target_group_id else "Every member"

    @admin.display(description="views", ordering="views")
    def views(self, offer: PromoContent) -> int:
        return getattr(offer, "views", 0)

    @admin.display(description="clicks", ordering="clicks")
    def clicks(self, offer: PromoContent) -> int:
        return getattr(offer, "clicks", 0)

    @admin.display(description="click rate", ordering="click_rate")
    def click_rate(self, offer: PromoContent) -> str:
        rate = getattr(offer, "click_rate", None)
        return "-" if rate is None else f"{rate:.1%}"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:offer_id>/preview/", view(self.preview_view), name=f"{name}_preview"),
            path("<int:offer_id>/preview/frame/", view(self.preview_frame_view),
                 name=f"{name}_preview_frame"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, offer_id: int) -> HttpResponse:
        return admin_views.offer_preview_page(request, model_admin=self, offer_id=offer_id)

    def preview_frame_view(self, request: HttpRequest, offer_id: int) -> HttpResponse:
        return admin_views.offer_preview_frame(request, model_admin=self, offer_id=offer_id)

    @admin.display(description="preview")
    def preview(self, offer: PromoContent) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_preview",
                      args=[offer.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">Preview</a>', url)
