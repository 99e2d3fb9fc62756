"""The double opt-in confirmation page a member reaches from the confirmation email."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from members.services.double_opt_in import email_confirm, email_confirmation_read


@require_http_methods(["GET", "POST"])
def email_confirm_view(request: HttpRequest, token: str) -> HttpResponse:
    # GET only shows a button: mail scanners open links, and a scanner must not confirm for
    # the member. The POST is the member's act.
    try:
        if request.method == "GET":
            member = email_confirmation_read(token)
            return render(request, "members/email_confirm.html",
                          {"member": member, "state": "ask"})
        confirmation = email_confirm(token=token, ip_address=request.META.get("REMOTE_ADDR"),
                                     user_agent=request.headers.get("User-Agent", ""))
    except ValidationError as exc:
        return render(request, "members/email_confirm.html",
                      {"state": "invalid", "error": exc.message_dict["token"][0]}, status=400)
    return render(request, "members/email_confirm.html", {
        "member": confirmation.member,
        "state": "already" if confirmation.already_confirmed else "confirmed",
    })
