"""Admin views beyond the model pages: the rule builder's JSON endpoints and the offer preview.

The rule builder's two sit under the TargetGroupAdmin (`TargetGroupAdmin.get_urls()`), behind
the admin site's login and staff check, and answer only users who may see target groups:

    GET  fields/   {"fields": catalog(), "references": {"mailing": [{"value", "label"}], ...}}
    POST preview/  body {"rules": <tree>, "target_group_id": <id of the group being edited>|null}
                   200 {"size", "estimated", "reachable": {channel: n}, "sample": [...]}
                   400 {"errors": {"rules.and[1].value": ["must be a number"], ...}}

The offer preview sits under the PromoContentAdmin: `<id>/preview/` is an admin page with the
choice of member (a target group's first member, or an id) and moment, which frames
`<id>/preview/frame/`: the account's offers page as that member sees it, in their language.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaigns.models import Campaign, PromoContent, StaticList, TargetGroup
from campaigns.rules import catalog
from campaigns.selectors import OfferPreview, audience_preview, offer_preview
from communications.models import Mailing
from loyalty.models import Store

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

# The builder offers the latest of each as suggestions; any id can still be typed.
SUGGESTIONS = 200


def _references() -> dict[str, list[dict[str, Any]]]:
    def latest(model: Any) -> list[dict[str, Any]]:
        rows = model.objects.order_by("-pk").values_list("pk", "name")[:SUGGESTIONS]
        return [{"value": pk, "label": name} for pk, name in rows]

    stores = Store.objects.order_by("name").values_list("code", "name")[:SUGGESTIONS]
    return {
        "mailing": latest(Mailing),
        "campaign": latest(Campaign),
        "target_group": latest(TargetGroup),
        "static_list": latest(StaticList),
        "store": [{"value": code, "label": name} for code, name in stores],
    }


def rule_fields(request: HttpRequest, *, model_admin: ModelAdmin) -> JsonResponse:
    if request.method != "GET":
        return JsonResponse({"errors": {"request": ["use GET"]}}, status=405)
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    return JsonResponse({"fields": catalog(), "references": _references()})


def _bad_request(path: str, message: str) -> JsonResponse:
    return JsonResponse({"errors": {path: [message]}}, status=400)


def rules_preview(request: HttpRequest, *, model_admin: ModelAdmin) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"errors": {"request": ["use POST"]}}, status=405)
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, ValueError) as error:
        return _bad_request("request", f"the body is not JSON: {error}")
    if not isinstance(body, dict) or "rules" not in body:
        return _bad_request("request", 'send {"rules": <tree>, "target_group_id": <id or null>}')
    target_group_id = body.get("target_group_id")
    if target_group_id is not None and (
            isinstance(target_group_id, bool) or not isinstance(target_group_id, int)):
        return _bad_request("target_group_id", "must be the id of a target group or null")
    try:
        preview = audience_preview(tree=body["rules"], target_group_id=target_group_id)
    except ValidationError as error:
        return JsonResponse({"errors": error.message_dict}, status=400)
    result = preview.as_dict()
    # The sample names members: only for those who may see members anyway.
    if not request.user.has_perm("members.view_member"):
        result["sample"] = []
    return JsonResponse(result)


class OfferPreviewForm(forms.Form):
    target_group = forms.ModelChoiceField(
        TargetGroup.objects.order_by("name"), required=False, label="As a member of",
        help_text="The group's first member; empty: the offer's own audience.")
    member = forms.IntegerField(min_value=1, required=False, label="Or member id",
                                help_text="A member typed in wins over the group.")
    at = forms.DateTimeField(
        required=False, label="At", input_formats=["%Y-%m-%dT%H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: now. A later moment shows a scheduled offer as it will look.")


def _offer_preview_of(request: HttpRequest, *, model_admin: ModelAdmin,
                      offer_id: int) -> tuple[PromoContent, OfferPreviewForm, OfferPreview | None]:
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    offer = model_admin.get_queryset(request).filter(pk=offer_id).first()
    if offer is None:
        raise Http404("no such offer")
    form = OfferPreviewForm(request.GET)
    if not form.is_valid():
        return offer, form, None
    data = form.cleaned_data
    return offer, form, offer_preview(offer=offer, target_group=data["target_group"],
                                      member_id=data["member"], at=data["at"])


def offer_preview_page(request: HttpRequest, *, model_admin: ModelAdmin,
                       offer_id: int) -> HttpResponse:
    offer, form, preview = _offer_preview_of(request, model_admin=model_admin,
                                             offer_id=offer_id)
    opts = model_admin.opts
    frame_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_preview_frame",
                        args=[offer.pk], current_app=model_admin.admin_site.name)
    return render(request, "admin/campaigns/promocontent/preview.html", {
        **model_admin.admin_site.each_context(request), "opts": opts, "original": offer,
        "title": f"Preview “{offer}”", "form": form, "preview": preview,
        "frame_url": f"{frame_url}?{request.GET.urlencode()}",
        # The sample names a member: only for those who may see members anyway.
        "show_member": request.user.has_perm("members.view_member"),
    })


@xframe_options_sameorigin
def offer_preview_frame(request: HttpRequest, *, model_admin: ModelAdmin,
                        offer_id: int) -> HttpResponse:
    offer, _, preview = _offer_preview_of(request, model_admin=model_admin, offer_id=offer_id)
    if preview is None or preview.member is None:
        return HttpResponse(status=204)
    member = preview.member
    with translation.override(member.language or settings.LANGUAGE_CODE):
        return render(request, "account/offers_preview.html", {
            "program_name": settings.ENGAGE_PROGRAM_NAME, "preview": preview,
            "previewed": [offer], "offer_member": member})
