"""Unsubscribe pages a member reaches from a message, without signing in.

The signed token in the link is the only credential, the same one RFC 8058 one-click uses, so
these pages act for the member the token names and nobody else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from members.models import Channel, Member
from members.services.consents import email_double_opt_in_pending
from members.services.unsubscribe import (
    member_preferences_current,
    member_preferences_save,
    member_unsubscribe_all,
    unsubscribe_one_click,
)
from members.unsubscribe import (
    UnsubscribeToken,
    UnsubscribeTokenInvalid,
    unsubscribe_token_member,
)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _evidence(request: HttpRequest) -> dict[str, Any]:
    return {"ip_address": request.META.get("REMOTE_ADDR") or None,
            "user_agent": request.headers.get("User-Agent", "")}


def _error_page(request: HttpRequest, *, title: str, message: str, status: int) -> HttpResponse:
    return render(request, "members/unsubscribe_error.html",
                  {"title": title, "message": message}, status=status)


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return _error_page(
        request, title="This link does not work",
        message="The unsubscribe link is incomplete or was changed. Please open the link from "
                "the message again, or reply to the message to reach us.",
        status=404)


TokenView = Callable[[HttpRequest, str, UnsubscribeToken, Member], HttpResponse]


def _member_from_token(view: TokenView) -> Callable[[HttpRequest, str], HttpResponse]:
    """Resolve the link's token to its member first; a link we did not sign is a 404 page."""
    @wraps(view)
    def resolved(request: HttpRequest, token: str) -> HttpResponse:
        try:
            data, member = unsubscribe_token_member(token)
        except UnsubscribeTokenInvalid:
            return _invalid_link(request)
        return view(request, token, data, member)
    return resolved


def _preferences_page(request: HttpRequest, *, token: str, data: UnsubscribeToken,
                      member: Member, errors: dict[str, list[str]] | None = None,
                      status: int = 200) -> HttpResponse:
    preferences = member_preferences_current(member=member)
    subscribed_here = any(p.subscribed for p in preferences.channels
                          if p.channel == data.channel)
    return render(request, "members/unsubscribe_preferences.html", {
        "token": token,
        "member": member,
        "can_grant": member.status != Member.Status.ERASED,
        "link_channel": Channel(data.channel).label,
        "subscribed_here": subscribed_here,
        "preferences": preferences,
        "errors": [text for texts in (errors or {}).values() for text in texts],
        "one_click_field": ONE_CLICK_FIELD,
        "one_click_value": ONE_CLICK_VALUE,
    }, status=status)


# Mail providers send the RFC 8058 POST with no cookies and no CSRF token; the signed token in
# the URL is what authorizes it.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@_member_from_token
def unsubscribe(request: HttpRequest, token: str, data: UnsubscribeToken,
                member: Member) -> HttpResponse:
    """GET: the preference page (changes nothing: mail scanners open links).
    POST `List-Unsubscribe=One-Click`: withdraw marketing on the link's channel at once."""
    if request.method == "GET":
        return _preferences_page(request, token=token, data=data, member=member)
    if request.POST.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
        return _error_page(
            request, title="Nothing changed",
            message=f"This address takes one-click unsubscribe requests with the body "
                    f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}.",
            status=400)
    unsubscribe_one_click(member=member, link=data, **_evidence(request))
    return render(request, "members/unsubscribe_done.html",
                  {"token": token, "channel": Channel(data.channel).label})


@require_POST
@_member_from_token
def unsubscribe_preferences(request: HttpRequest, token: str, data: UnsubscribeToken,
                            member: Member) -> HttpResponse:
    """The preference form (CSRF-protected: a person submits it from our page)."""
    try:
        if "unsubscribe_all" in request.POST:
            member_unsubscribe_all(member=member, **_evidence(request))
        else:
            shown = member_preferences_current(member=member)
            checked_channels = set(request.POST.getlist("channel"))
            checked_categories = set(request.POST.getlist("category"))
            # An unchecked box is absent from the form: what the page showed and is not
            # posted is "no". Posted values the page did not show reach the service, which
            # names them as errors.
            channels = {p.channel: False for p in shown.channels} | dict.fromkeys(
                checked_channels, True)
            categories = {p.code: False for p in shown.categories} | dict.fromkeys(
                checked_categories, True)
            member_preferences_save(member=member, channels=channels, categories=categories,
                                    **_evidence(request))
    except ValidationError as exc:
        return _preferences_page(request, token=token, data=data, member=member,
                                 errors=exc.message_dict, status=400)
    return redirect("members-public:unsubscribe-saved", token=token)


@require_GET
@_member_from_token
def unsubscribe_saved(request: HttpRequest, token: str, data: UnsubscribeToken,
                      member: Member) -> HttpResponse:
    preferences = member_preferences_current(member=member)
    subscribed = [p for p in preferences.channels if p.subscribed]
    return render(request, "members/unsubscribe_saved.html", {
        "token": token,
        "subscribed": [p.label for p in subscribed],
        "confirmation_pending": (any(p.channel == Channel.EMAIL for p in subscribed)
                                 and email_double_opt_in_pending(member=member)),
    })
