"""The member's account pages (/account/): sign-in with a one-time code, then the sections
other apps add (members.hooks.ACCOUNT_SECTIONS), in the member's language.

A signed-in page is decorated with `member_required`, which puts the member on the request
(`request.member`) and activates their language; pages only ever read and change that
member's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from members import hooks
from members.authentication import SESSION_KEY, session_member
from members.services.sign_in import (
    SignInRefused,
    sign_in_address_parse,
    sign_in_code_request,
    sign_in_code_verify,
)

ADDRESS_KEY = "engage_sign_in_address"
NEXT_KEY = "engage_sign_in_next"


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _safe_next(request: HttpRequest, candidate: str) -> str:
    if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return candidate
    return reverse("account:home")


def account_context(request: HttpRequest, **context: Any) -> dict[str, Any]:
    """What every account page's template needs: the member, the navigation, the program."""
    path = request.path
    sections = [{"url": reverse(name), "label": label}
                for _, name, label in sorted(hooks.ACCOUNT_SECTIONS, key=lambda s: s[0])]
    for section in sections:
        section["current"] = path.startswith(section["url"])
    return {"account_member": getattr(request, "member", None), "account_sections": sections,
            "program_name": settings.ENGAGE_PROGRAM_NAME, **context}


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        member = session_member(request)
        if member is None:
            return redirect(f"{reverse('account:sign-in')}?{urlencode({'next': request.path})}")
        request.member = member
        with translation.override(member.language or settings.LANGUAGE_CODE):
            response = view(request, *args, **kwargs)
            # Rendered inside the override: a TemplateResponse would render after it.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        response.headers.setdefault("Cache-Control", "private, no-store")
        return response
    return wrapper


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    if session_member(request) is not None:
        return redirect("account:home")
    next_url = request.POST.get("next") or request.GET.get("next", "")
    address, error, refusal = "", "", None
    if request.method == "POST":
        address = request.POST.get("address", "").strip()
        try:
            sign_in_code_request(raw_address=address, ip_address=_client_ip(request))
        except SignInRefused as refused:
            error, refusal = _refusal_text(refused), refused
        else:
            request.session[ADDRESS_KEY] = address
            request.session[NEXT_KEY] = next_url
            return redirect("account:sign-in-code")
    return _refusal_status(render(request, "account/sign_in.html", account_context(
        request, address=address, error=error, next=next_url)), refusal)


@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    address = request.session.get(ADDRESS_KEY)
    if not address:
        return redirect("account:sign-in")
    error, refusal = "", None
    if request.method == "POST":
        try:
            member = sign_in_code_verify(raw_address=address, code=request.POST.get("code", ""),
                                         ip_address=_client_ip(request))
        except SignInRefused as refused:
            error, refusal = _refusal_text(refused), refused
        else:
            next_url = _safe_next(request, request.session.get(NEXT_KEY, ""))
            # A new session key at sign-in: a key planted before it is worth nothing after.
            request.session.cycle_key()
            request.session[SESSION_KEY] = member.pk
            request.session.pop(ADDRESS_KEY, None)
            request.session.pop(NEXT_KEY, None)
            return redirect(next_url)
    shown = sign_in_address_parse(address).address
    return _refusal_status(render(request, "account/sign_in_code.html", account_context(
        request, address=shown, error=error)), refusal)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("account:sign-in")


@member_required
def home(request: HttpRequest) -> HttpResponse:
    home_data: dict[str, Any] = {}
    for handler in hooks.ACCOUNT_HOME:
        home_data.update(handler(request.member, "account"))
    return render(request, "account/home.html", account_context(
        request, home=home_data, home_templates=hooks.ACCOUNT_HOME_TEMPLATES))


def _refusal_status(page: HttpResponse, refused: SignInRefused | None) -> HttpResponse:
    """The page's status for its refusal: 429 with Retry-After when it was a limit (as the
    member API answers), 400 for anything else wrong."""
    if refused is None:
        return page
    if refused.code in ("too_many_codes", "too_many_attempts"):
        page.status_code = 429
        if refused.retry_after:
            page["Retry-After"] = str(refused.retry_after)
    else:
        page.status_code = 400
    return page


def _refusal_text(refused: SignInRefused) -> str:
    texts = {
        "invalid_address": translation.gettext(
            "Enter the email address or phone number of your membership."),
        "too_many_codes": translation.gettext(
            "Too many codes were asked for. Please try again later."),
        "too_many_attempts": translation.gettext(
            "Too many wrong codes. Please ask for a new code later."),
        "invalid_code": translation.gettext("This code is not valid."),
        "expired_code": translation.gettext("This code has expired. Please ask for a new one."),
    }
    return texts.get(refused.code, refused.message)
