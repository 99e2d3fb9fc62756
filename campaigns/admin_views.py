"""The rule builder's JSON endpoints on the target group admin: the field catalog and a preview.

Both sit under the TargetGroupAdmin (`TargetGroupAdmin.get_urls()`), behind the admin site's
login and staff check, and answer only users who may see target groups:

    GET  fields/   {"fields": catalog(), "references": {"mailing": [{"value", "label"}], ...}}
    POST preview/  body {"rules": <tree>, "target_group_id": <id of the group being edited>|null}
                   200 {"size", "estimated", "reachable": {channel: n}, "sample": [...]}
                   400 {"errors": {"rules.and[1].value": ["must be a number"], ...}}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, JsonResponse

from campaigns.models import Campaign, StaticList, TargetGroup
from campaigns.rules import catalog
from campaigns.selectors import audience_preview
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
