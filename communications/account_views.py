"""The member's inbox in the account pages (/account/messages/): what they received on every
channel, newest first, filtered by channel or to unread app messages, and marking an app message
read (communications.selectors.inbox, communications.services.inbox)."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from communications.api_me import InboxPagination
from communications.models import Message
from communications.selectors.inbox import inbox_entries, inbox_page
from communications.services.inbox import MessageReadRefused, member_message_read
from members.account_views import account_context, member_required
from members.preferences_views import CHANNEL_LABELS


class InboxFilterForm(forms.Form):
    channel = forms.ChoiceField(required=False, label=gettext_lazy("Channel"), choices=[
        ("", gettext_lazy("All channels")), *CHANNEL_LABELS.items()])
    unread = forms.BooleanField(required=False, label=gettext_lazy("Unread only"))


@member_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    filters = InboxFilterForm(request.GET)
    chosen: dict[str, Any] = filters.cleaned_data if filters.is_valid() else {}
    fetch = functools.partial(inbox_page, member_id=request.member.pk,
                              channel=chosen.get("channel") or None,
                              unread=True if chosen.get("unread") else None)
    paginator = InboxPagination()
    try:
        page = paginator.paginate_inbox(Request(request), fetch)
    except NotFound:  # a cursor that was changed by hand or has expired
        return redirect(f"{request.path}?{_without_cursor(request)}")
    entries = inbox_entries(page or [], member=request.member,
                            unsubscribe_url=request.build_absolute_uri(
                                reverse("account:preferences")))
    shown = [{"entry": entry, "label": CHANNEL_LABELS.get(entry.channel, entry.channel),
              "web_link": entry.link_url.startswith("https://")} for entry in entries]
    return render(request, "account/inbox.html", account_context(
        request, filters=filters, messages_shown=shown, newer=paginator.get_previous_link(),
        older=paginator.get_next_link(), filtered=bool(chosen.get("channel") or
                                                       chosen.get("unread"))))


def _without_cursor(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop(InboxPagination.cursor_query_param, None)
    return query.urlencode()


@member_required
@require_POST
def message_read(request: HttpRequest, message_id: int) -> HttpResponse:
    try:
        member_message_read(member_id=request.member.pk, message_id=message_id)
    except (Message.DoesNotExist, MessageReadRefused) as exc:
        raise Http404("no such app message in your inbox") from exc
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        back = reverse("communications-account:inbox")
    return redirect(back)
