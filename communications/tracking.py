"""Engage's own open and click tracking, for email gateways that report neither (SMTP).

With a mailing's `track_engagement` on, each email's HTML gets its links pointed at
`/t/c/<token>` and a 1x1 image at `/t/o/<token>`; the token signs the message id (and for a
click the destination), so the redirect goes only where the email said and nobody can mark
another member's message opened. A hit moves the message forward through the same status
machine as a receipt (source `tracking`): opened, then clicked; repeats change nothing.
Links to Engage itself (unsubscribe, preferences) are left alone: an unsubscribe is not a
click, and the one-click link must stay exactly as the List-Unsubscribe header has it.
"""
from __future__ import annotations

import re

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from communications.models import Message, MessageStatusChange
from communications.services.statuses import StatusChange, message_statuses_apply

_SALT = "engage.tracking"
_HREF = re.compile(r'(<a\b[^>]*?\bhref\s*=\s*)(["\'])(https?://[^"\'<>\s]+)\2', re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
# The smallest transparent GIF.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00"
         b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def tracked_html(html: str, *, message_id: int) -> str:
    """`html` with its web links going through the click redirect and the open pixel added."""
    own = settings.ENGAGE_PUBLIC_URL

    def wrap(match: re.Match[str]) -> str:
        url = match.group(3)
        if url.startswith(own):
            return match.group(0)
        token = signing.dumps([message_id, url], salt=_SALT, compress=True)
        return (f"{match.group(1)}{match.group(2)}{own}"
                f"{reverse('tracking:click', args=[token])}{match.group(2)}")

    html = _HREF.sub(wrap, html)
    pixel_token = signing.dumps([message_id], salt=_SALT)
    pixel = (f'<img src="{own}{reverse("tracking:open", args=[pixel_token])}" width="1" '
             f'height="1" alt="" style="display:block;border:0">')
    if _BODY_END.search(html):
        return _BODY_END.sub(lambda end: pixel + end.group(0), html, count=1)
    return html + pixel


def _read(token: str) -> list | None:
    try:
        value = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, list) and value and isinstance(value[0], int) else None


def engagement_record(*, message_id: int, status: str) -> int:
    """Move the message forward to `status` (opened / clicked), recorded as tracking."""
    return message_statuses_apply(
        changes=[StatusChange(message_id, status, timezone.now())],
        source=MessageStatusChange.Source.TRACKING)


@require_GET
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    value = _read(token)
    if value is not None:
        engagement_record(message_id=value[0], status=Message.Status.OPENED)
    # The image is answered either way: a mail client shows a broken image otherwise.
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, private"
    return response


@require_GET
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    value = _read(token)
    if value is None or len(value) != 2 or not isinstance(value[1], str):
        return HttpResponseNotFound("This link is not valid.")
    engagement_record(message_id=value[0], status=Message.Status.CLICKED)
    return HttpResponseRedirect(value[1])


app_name = "tracking"
urlpatterns = [
    path("o/<str:token>", open_pixel, name="open"),
    path("c/<str:token>", click_redirect, name="click"),
]
