"""The member's preferences page (/account/preferences/): marketing per channel and per
subscription category, language and quiet hours, with the latest entries of their consent
ledger (members.services.preferences; consent source `account_page`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods

from members.account_views import account_context, member_required
from members.models import Channel, ConsentEvent, ConsentSource
from members.services.preferences import (
    AccountPreferences,
    QuietHours,
    account_preferences_current,
    account_preferences_save,
)

# What the member reads for the ledger's words, in their language.
CHANNEL_LABELS = {
    Channel.EMAIL: gettext_lazy("Email"),
    Channel.SMS: gettext_lazy("Text messages (SMS)"),
    Channel.PUSH: gettext_lazy("App notifications"),
    Channel.VIBER: gettext_lazy("Viber"),
    Channel.SOCIAL: gettext_lazy("Social networks"),
}
SOURCE_LABELS = {
    ConsentSource.IMPORT: gettext_lazy("when you joined"),
    ConsentSource.ACCOUNT_PAGE: gettext_lazy("on this website"),
    ConsentSource.APP: gettext_lazy("in the app"),
    ConsentSource.UNSUBSCRIBE_LINK: gettext_lazy("with an unsubscribe link"),
    ConsentSource.SMS_STOP: gettext_lazy("by replying STOP"),
    ConsentSource.SUPPORT: gettext_lazy("by our support team"),
    ConsentSource.API: gettext_lazy("by the program"),
    ConsentSource.DOUBLE_OPT_IN: gettext_lazy("by confirming your address"),
    ConsentSource.ERASURE: gettext_lazy("when your data was erased"),
}
HISTORY_SHOWN = 10
TIME_WIDGET = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class PreferencesForm(forms.Form):
    channel = forms.MultipleChoiceField(required=False)
    category = forms.MultipleChoiceField(required=False)
    language = forms.ChoiceField(choices=settings.LANGUAGES, label=gettext_lazy("Language"))
    quiet = forms.BooleanField(required=False, label=gettext_lazy("Keep quiet hours"))
    quiet_from = forms.TimeField(required=False, widget=TIME_WIDGET,
                                 label=gettext_lazy("From"))
    quiet_until = forms.TimeField(required=False, widget=TIME_WIDGET,
                                  label=gettext_lazy("Until"))

    def __init__(self, *args: Any, current: AccountPreferences, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = [(p.channel, p.channel)
                                          for p in current.consents.channels]
        self.fields["category"].choices = [(c.code, c.name)
                                           for c in current.consents.categories]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("quiet"):
            for name in ("quiet_from", "quiet_until"):
                if cleaned.get(name) is None and name not in self.errors:
                    self.add_error(name, gettext("Enter a time, for example 22:00."))
            starts, ends = cleaned.get("quiet_from"), cleaned.get("quiet_until")
            if starts is not None and starts == ends:
                self.add_error("quiet_until", gettext(
                    "The quiet hours must end at another time than they start."))
        return cleaned


def _initial(current: AccountPreferences) -> dict[str, Any]:
    quiet = current.quiet_hours
    return {
        "channel": [p.channel for p in current.consents.channels if p.subscribed],
        "category": [c.code for c in current.consents.categories if c.subscribed],
        "language": current.language,
        "quiet": quiet is not None,
        "quiet_from": quiet.starts_at if quiet else None,
        "quiet_until": quiet.ends_at if quiet else None,
    }


def _history(member_id: int) -> list[dict[str, Any]]:
    events = (ConsentEvent.objects.filter(member_id=member_id, category__isnull=True)
              .order_by("-recorded_at", "-id")
              .values("channel", "action", "source", "recorded_at")[:HISTORY_SHOWN])
    return [{"channel": CHANNEL_LABELS.get(event["channel"], event["channel"]),
             "granted": event["action"] == ConsentEvent.Action.GRANT,
             "where": SOURCE_LABELS.get(event["source"], ""),
             "at": event["recorded_at"]} for event in events]


def _save(request: HttpRequest, form: PreferencesForm, current: AccountPreferences) -> None:
    data = form.cleaned_data
    checked_channels, checked_categories = set(data["channel"]), set(data["category"])
    account_preferences_save(
        member=request.member, source=ConsentSource.ACCOUNT_PAGE,
        channels={p.channel: p.channel in checked_channels for p in current.consents.channels},
        categories={c.code: c.code in checked_categories for c in current.consents.categories},
        language=data["language"],
        quiet_hours=QuietHours(data["quiet_from"], data["quiet_until"]) if data["quiet"]
        else None,
        ip_address=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""))


@member_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    member = request.member
    current = account_preferences_current(member=member)
    if request.method == "POST":
        form = PreferencesForm(request.POST, current=current)
        if form.is_valid():
            try:
                _save(request, form, current)
            except ValidationError as exc:
                for key, texts in exc.message_dict.items():
                    field = {"quiet_hours": "quiet_until", "language": "language"}.get(key)
                    form.add_error(field, " ".join(texts))
            else:
                messages.success(request, gettext("Your preferences are saved."))
                return redirect("account:preferences")
    else:
        form = PreferencesForm(initial=_initial(current), current=current)
    channels = [{"value": p.channel, "label": CHANNEL_LABELS.get(p.channel, p.label),
                 "checked": p.channel in (form["channel"].value() or [])}
                for p in current.consents.channels]
    categories = [{"value": c.code, "name": c.name, "description": c.description,
                   "checked": c.code in (form["category"].value() or [])}
                  for c in current.consents.categories]
    quiet = {"enabled": bool(form["quiet"].value()),
             "from": _time_text(form["quiet_from"].value()),
             "until": _time_text(form["quiet_until"].value())}
    return render(request, "account/preferences.html", account_context(
        request, form=form, channels=channels, categories=categories, quiet=quiet,
        current=current, history=_history(member.pk)), status=400 if form.errors else 200)


def _time_text(value: Any) -> str:
    # The form's initial value is a time, a posted one the text typed.
    return value.strftime("%H:%M") if isinstance(value, dt.time) else (value or "")
