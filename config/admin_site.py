"""Engage's admin site: the Django admin, branded and organized by the marketer's tasks.

The index and the sidebar list the screens by what a person does (Audience, Content, Sending,
Results, Settings and integration) instead of by Django app. Each screen still appears only to
those Django's model permissions let see it: the groups are built from the site's own
permission-filtered app list. An app's own page (/admin/<app>/) keeps Django's list.

The index is also the marketer's dashboard (communications.selectors.dashboard) for staff who
may view mailings; its last-week table downloads as CSV.

Installed as the default site (`admin.site`) by `EngageAdminConfig`, which INSTALLED_APPS
names in place of django.contrib.admin: every `admin.register` lands here. That app config
is imported while the app registry loads, so models and selectors are imported inside the
methods that use them, never at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils import timezone

from config.csv_export import csv_lines, csv_response


@dataclass(frozen=True)
class TaskGroup:
    label: str  # its block's id on the home page (`task-<label>`) and CSS class (`app-<label>`)
    name: str
    models: tuple[str, ...]  # "app_label.ModelName", in the order they are listed


TASK_GROUPS = (
    TaskGroup("audience", "Audience", (
        "campaigns.TargetGroup", "campaigns.StaticList", "members.Member",
        "members.FeedbackThread", "members.Consent", "members.ConsentEvent",
        "members.Suppression", "members.SubscriptionCategory", "members.CustomAttribute",
        "loyalty.LoyaltyAccount", "loyalty.Order", "loyalty.Tier")),
    TaskGroup("content", "Content", (
        "communications.Template", "campaigns.PromoContent", "loyalty.FavoriteProductsOffer",
        "loyalty.FavoriteProductsSelection", "loyalty.Voucher", "loyalty.Product")),
    TaskGroup("sending", "Sending", (
        "communications.Mailing", "communications.TriggerMailing", "communications.Gateway",
        "communications.FrequencyCap", "communications.QuietHours")),
    TaskGroup("results", "Results", (
        "campaigns.Campaign", "communications.OrderCredit", "auditlog.LogEntry",
        "members.AuditEntry")),
    TaskGroup("settings", "Settings and integration", (
        "loyalty.ApiKey", "loyalty.WebhookSubscription", "loyalty.WebhookDelivery",
        "loyalty.CustomEventType", "auth.User", "auth.Group",
        # Staff sign-in (config/staff_auth.py): authenticator devices, locked-out logins.
        "otp_totp.TOTPDevice", "axes.AccessAttempt", "axes.AccessFailureLog",
        "axes.AccessLog")),
)
# A screen registered without a place above still shows (to those allowed), last, rather
# than vanishing; tests/test_admin_navigation.py fails until it is given one.
OTHER = TaskGroup("other", "Other", ())
# "app_label.ModelName" -> its group and position there.
PLACES = {label: (group, position) for group in TASK_GROUPS
          for position, label in enumerate(group.models)}
MAILING_VIEW = "communications.view_mailing"


class EngageAdminSite(AdminSite):
    site_header = "Engage"
    site_title = "Engage"
    index_title = "Home"
    # The login asks for the second factor when ENGAGE_STAFF_2FA is on (config/staff_auth.py).
    login_template = "admin/staff_login.html"

    @property
    def login_form(self):  # type: ignore[override]
        from config.staff_auth import StaffLoginForm

        return StaffLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        from config.staff_auth import second_factor_passed

        return super().has_permission(request) and second_factor_passed(request)

    def login(self, request: HttpRequest,
              extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from config.staff_auth import after_login

        return after_login(request, super().login(request, extra_context))

    def get_app_list(self, request: HttpRequest,
                     app_label: str | None = None) -> list[dict[str, Any]]:
        if app_label is not None:
            return super().get_app_list(request, app_label)
        return self.task_groups(request)

    def task_groups(self, request: HttpRequest) -> list[dict[str, Any]]:
        """The screens `request.user` may open, by task; groups with none are left out."""
        listed: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for app in self._build_app_dict(request).values():
            for model in app["models"]:
                group, position = PLACES.get(model["model"]._meta.label, (OTHER, 0))
                listed.setdefault(group.label, []).append((position, model))
        index_url = reverse("admin:index", current_app=self.name)
        groups = []
        for group in (*TASK_GROUPS, OTHER):
            models = sorted(listed.get(group.label, []),
                            key=lambda entry: (entry[0], entry[1]["name"]))
            if models:
                # The group's caption leads to its block on the home page; no app page of its
                # own (a fragment is never in request.path, so no block looks "current").
                groups.append({"name": group.name, "app_label": group.label,
                               "app_url": f"{index_url}#task-{group.label}",
                               "has_module_perms": True,
                               "models": [model for _, model in models]})
        return groups

    def index(self, request: HttpRequest,
              extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        if request.user.has_perm(MAILING_VIEW):
            from communications.selectors.dashboard import mailing_dashboard

            context["dashboard"] = mailing_dashboard()
            context["dashboard_csv_url"] = reverse("admin:dashboard_last_week_csv",
                                                   current_app=self.name)
        return super().index(request, context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("dashboard/last-week.csv", self.admin_view(self.last_week_csv_view),
                 name="dashboard_last_week_csv"),
            # Not admin_view: its user has signed in but not yet passed the second factor.
            path("second-factor/setup/", self.second_factor_setup_view,
                 name="staff_2fa_setup"),
            *super().get_urls(),
        ]

    def second_factor_setup_view(self, request: HttpRequest) -> HttpResponse:
        from config.staff_auth import second_factor_setup

        return second_factor_setup(request, self)

    def last_week_csv_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's last-week table as CSV: a row per mailing, then the totals."""
        if not request.user.has_perm(MAILING_VIEW):
            raise PermissionDenied
        from communications.selectors.dashboard import (
            LAST_WEEK_CSV_HEADER,
            last_week_csv_rows,
            mailing_dashboard,
        )

        dashboard = mailing_dashboard()
        return csv_response(
            csv_lines(LAST_WEEK_CSV_HEADER, last_week_csv_rows(dashboard)),
            filename=f"mailings-last-week-{timezone.localdate(dashboard.generated_at)}.csv")


class EngageAdminConfig(AdminConfig):
    default_site = "config.admin_site.EngageAdminSite"
