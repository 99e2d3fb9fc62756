"""The member's app installs as push addresses: registered and removed by the app itself.

A token is checked per platform and stored in one canonical form, so the unique (platform,
token) constraint recognises the same install whatever way the app spells it:

- `fcm` (Firebase) and `hms` (Huawei Push Kit): the registration token as the SDK gives it,
  visible ASCII without spaces, at most 4096 characters;
- `apns` (Apple): the device token as 64 hexadecimal digits (32 bytes), stored lower-case;
- `webpush`: the browser's subscription, `PushSubscription.toJSON()` as JSON text,
  `{"endpoint": <https URL of the push service>, "keys": {"p256dh": <base64url of the
  browser's P-256 public key, an uncompressed point of 65 bytes>, "auth": <base64url of 16
  bytes>}}`, stored with only those fields, sorted keys, no spaces and unpadded base64url
  (`expirationTime` and anything else the browser adds are dropped: they are not part of the
  address), in at most 1024 characters, what a message row keeps as its address.

A token belongs to one install, and an install to whoever uses it now: the same token
registered by another member moves to them (a phone that changed hands, or a shared browser
where someone else signed in), and the previous member no longer gets pushes there. Messages
already frozen for the previous member with that token as address (a mailing in progress) are
not re-checked and may still reach the device. Removing a device deactivates it (the row
stays, as the provider's dead-token answers leave it); registering the token again brings it
back. A member keeps at most `DEVICES_PER_MEMBER` active devices: registering one more
deactivates the one seen longest ago (an app reinstalled many times gets a new token each
time, and the old ones would otherwise stay until a push to them fails).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.ssrf import address_is_public, host_names_this_machine, numeric_host_address
from members.models import Device, Member

Platform = Device.Platform

MAX_TOKEN = 4096
DEVICES_PER_MEMBER = 20
# A push message keeps its address in Message.address: a longer subscription could never be
# sent to.
MAX_SUBSCRIPTION = 1024
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
_APNS = re.compile(r"^[0-9a-fA-F]{64}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_NETLOC = re.compile(r"^[^/:@\[\]\s]+(:\d{1,5})?$")


def device_token_clean(*, platform: str, token: Any) -> str:
    """The token in its canonical form, or ValidationError keyed `platform` or `token`."""
    if platform not in Platform.values:
        raise ValidationError({"platform": f"use one of {', '.join(Platform.values)}"})
    if platform == Platform.WEBPUSH:
        return _subscription_clean(token)
    if not isinstance(token, str) or not token.strip():
        raise ValidationError({"token": "is required"})
    token = token.strip()
    if platform == Platform.APNS:
        if not _APNS.match(token):
            raise ValidationError({"token": "an APNs device token is 64 hexadecimal digits"})
        return token.lower()
    if len(token) > MAX_TOKEN:
        raise ValidationError({"token": f"at most {MAX_TOKEN} characters"})
    if not _VISIBLE_ASCII.match(token):
        raise ValidationError({"token": "a registration token has only visible ASCII "
                                        "characters, no spaces"})
    return token


@dataclass(frozen=True)
class BrowserKeys:
    """A push subscription's keys, read: the browser's public key as sent (an uncompressed
    P-256 point) and loaded, and its auth secret."""

    p256dh: bytes
    public_key: ec.EllipticCurvePublicKey
    auth: bytes


def webpush_subscription_problems(data: Any) -> dict[str, str]:
    """What is wrong with a browser's push subscription (the parsed JSON of
    PushSubscription.toJSON()), keyed by field (`subscription`, `endpoint`, `keys.p256dh`,
    `keys.auth`); {} when a push can be sent to it. The one rule: device registration and
    the web-push adapter both apply it.

    The endpoint is an https URL naming host[:port] only (what a VAPID `aud` can name: no user
    info, no IPv6 literal). A member, not the staff, chose it, so in production it may not
    name this machine or a private network (localhost, or a private, loopback or link-local
    address in any numeric form): the workers must not be made to post inside their own
    network (SSRF). A name is judged when a push is sent, by the addresses it resolves to then
    (communications.gateways.webpush). ENGAGE_PUSH_ALLOW_LOOPBACK lifts this for development,
    tests and benchmarks, where plain http is also allowed to such a push service.
    """
    return webpush_subscription_read(data)[1]


def webpush_subscription_read(data: Any) -> tuple[BrowserKeys | None, dict[str, str]]:
    """The subscription's keys when it passes webpush_subscription_problems' rule, else None
    with the problems: a sender reads the keys once, for the rule and the encryption."""
    if not isinstance(data, dict):
        return None, {"subscription": 'must be the JSON of PushSubscription.toJSON(): '
                                      '{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}'}
    problems: dict[str, str] = {}
    problem = _endpoint_problem(data.get("endpoint"))
    if problem:
        problems["endpoint"] = problem
    keys = data.get("keys") if isinstance(data.get("keys"), dict) else {}
    p256dh = b64url_decode(keys.get("p256dh"))
    public_key = _p256_public_key(p256dh) if p256dh is not None and len(p256dh) == 65 else None
    if public_key is None:
        problems["keys.p256dh"] = ("must be the browser's P-256 public key, an uncompressed "
                                   "point of 65 bytes in base64url")
    auth = b64url_decode(keys.get("auth"))
    if auth is None or len(auth) != 16:
        problems["keys.auth"] = "must be the 16-byte auth secret in base64url"
    if problems or p256dh is None or public_key is None or auth is None:
        return None, problems
    return BrowserKeys(p256dh, public_key, auth), {}


def _endpoint_problem(endpoint: Any) -> str:
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None:
        return "must be the push service's https URL"
    return _push_service_problem(parts.scheme, parts.netloc,
                                 bool(settings.ENGAGE_PUSH_ALLOW_LOOPBACK))


# The endpoint's rule reads only its scheme and host[:port], which a mailing's thousands of
# subscriptions share a handful of (one per push service): the web-push adapter applies the
# rule to every push, where it was a tenth of a worker's time.
@functools.lru_cache(maxsize=1024)
def _push_service_problem(scheme: str, netloc: str, allow_loopback: bool) -> str:
    if scheme not in ("https", "http") or not _NETLOC.match(netloc):
        return "must be the push service's https URL"
    private = _private_host(urlsplit(f"{scheme}://{netloc}").hostname or "")
    if private and not allow_loopback:
        return ("must be a push service on the internet, not this machine or a private "
                "network")
    if scheme == "http" and not private:
        return "must be https (http only for a push service on this machine)"
    return ""


def _private_host(host: str) -> bool:
    """A host that names this machine or a private network by itself: localhost, or an
    address (in any numeric form) that is not public. Names are judged when a push is sent,
    by what they resolve to then (communications.gateways.webpush)."""
    if host_names_this_machine(host):
        return True
    address = numeric_host_address(host)
    return address is not None and not address_is_public(address)


def _subscription_clean(token: Any) -> str:
    data = token
    if isinstance(token, str):
        try:
            data = json.loads(token)
        except ValueError:
            data = None
    problems = webpush_subscription_problems(data)
    if problems:
        raise ValidationError({"token": [f"{field}: {text}"
                                         for field, text in sorted(problems.items())]})
    keys = {name: b64url_encode(b64url_decode(data["keys"][name])) for name in ("auth", "p256dh")}
    canonical = json.dumps({"endpoint": data["endpoint"], "keys": keys},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if len(canonical) > MAX_SUBSCRIPTION:
        raise ValidationError({"token": f"the subscription takes more than {MAX_SUBSCRIPTION} "
                                        f"characters; its endpoint is too long"})
    return canonical


def b64url_decode(value: Any) -> bytes | None:
    """Base64url text (padded or not) as bytes; None when it is not base64url."""
    if not isinstance(value, str) or not _BASE64URL.match(value):
        return None
    bare = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError):
        return None



def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url, as Web Push writes keys."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _p256_public_key(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    if raw[0] != 4:  # uncompressed: the form Web Push (RFC 8291) sends
        return None
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return None


def device_register(*, member: Member, platform: str, token: Any,
                    app: str = "") -> tuple[Device, bool]:
    """Register (or refresh) the member's push token; returns (device, created).

    Known tokens are taken over: moved from another member, reactivated if removed, seen now.
    """
    token = device_token_clean(platform=platform, token=token)
    app = (app or "").strip()[:100]
    for _ in range(2):
        try:
            with transaction.atomic():
                device, created = _device_take(member=member, platform=platform, token=token,
                                               app=app)
                _devices_beyond_limit_deactivate(member=member)
                return device, created
        except IntegrityError:
            # The same token was registered at once by another call, whose row this one
            # takes over on the second pass.
            continue
    raise RuntimeError("device registration kept colliding with concurrent ones")


def _device_take(*, member: Member, platform: str, token: str,
                 app: str) -> tuple[Device, bool]:
    now = timezone.now()
    device = Device.objects.select_for_update().filter(platform=platform, token=token).first()
    if device is None:
        return Device.objects.create(member=member, platform=platform, token=token, app=app,
                                     last_seen_at=now), True
    device.member = member
    device.app = app or device.app
    device.is_active = True
    device.last_seen_at = now
    device.save(update_fields=["member", "app", "is_active", "last_seen_at"])
    return device, False


def _devices_beyond_limit_deactivate(*, member: Member) -> int:
    stale = list(Device.objects.filter(member=member, is_active=True)
                 .order_by(F("last_seen_at").desc(nulls_last=True), "-pk")
                 .values_list("pk", flat=True)[DEVICES_PER_MEMBER:])
    return Device.objects.filter(pk__in=stale).update(is_active=False) if stale else 0


def device_remove(*, member: Member, device_id: int) -> bool:
    """Deactivate one of the member's own devices; False when they have no such active one."""
    return bool(Device.objects.filter(pk=device_id, member=member, is_active=True)
                .update(is_active=False))
