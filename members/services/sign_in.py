"""Member sign-in with a one-time code sent to the member's email or phone.

The code goes out through the program's own gateways as a transactional message (the
SIGN_IN_CODE_REQUESTED hook; communications sends it), not a marketing one: consent and
frequency rules do not apply, only the suppression list. The answer to a request is the same
whether or not a member has the address, so the form cannot be used to find out who is a
member; the limits still count such requests.

Limits (settings): a code lives ENGAGE_SIGN_IN_CODE_TTL; ENGAGE_SIGN_IN_CODE_ATTEMPTS wrong
tries spend it; an address gets at most ENGAGE_SIGN_IN_CODES_PER_ADDRESS and an IP address
ENGAGE_SIGN_IN_CODES_PER_IP codes an hour, and an IP address at most
ENGAGE_SIGN_IN_FAILURES_PER_IP wrong codes an hour. Every refusal is a SignInRefused with a
stable `code` the app can switch on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from config.sql import ModelRows, prepared_cursor
from members import hooks
from members.models import Member, MemberToken, SignInCode
from members.services.phones import phone_normalize

CODE_DIGITS = 6
TOKEN_PREFIX = "mt_"
# A token's last_used_at tells the member which devices are still signed in: written on every
# call it would make each read a write and a commit. Once a minute was still a write for one
# app call in six under the member API's benchmark (5,000 members' apps, each calling every
# ten seconds), its fsyncs the slowest part of those calls; a quarter of an hour still tells
# a device in use from one left behind.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=15)
LIMIT_WINDOW = timedelta(hours=1)


class SignInRefused(Exception):
    """A sign-in step refused, with a stable code: invalid_address, too_many_codes,
    too_many_attempts, invalid_code, expired_code."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignInAddress:
    channel: str
    address: str


def sign_in_address_parse(raw: str) -> SignInAddress:
    """An email or a phone number as the member typed it, normalized for lookup."""
    raw = (raw or "").strip()
    if "@" in raw:
        try:
            validate_email(raw)
        except ValidationError as exc:
            raise SignInRefused("invalid_address", f"{raw[:100]!r} is not an email address") \
                from exc
        return SignInAddress(SignInCode.Channel.EMAIL, raw.lower())
    try:
        phone = phone_normalize(raw)
    except ValidationError as exc:
        raise SignInRefused("invalid_address",
                            "enter the email address or phone number of your membership") from exc
    if not phone:
        raise SignInRefused("invalid_address",
                            "enter the email address or phone number of your membership")
    return SignInAddress(SignInCode.Channel.SMS, phone)


def _code_hash(code_id: int, code: str) -> str:
    key = f"{settings.SECRET_KEY}:sign-in".encode()
    return hmac.new(key, f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _member_for(target: SignInAddress) -> Member | None:
    members = Member.objects.filter(status=Member.Status.ACTIVE)
    if target.channel == SignInCode.Channel.EMAIL:
        members = members.filter(email__iexact=target.address)
    else:
        members = members.filter(phone=target.address)
    return members.order_by("pk").first()


def _retry_after(oldest: SignInCode | None, now) -> int:
    if oldest is None:
        return int(LIMIT_WINDOW.total_seconds())
    return max(1, int((oldest.created_at + LIMIT_WINDOW - now).total_seconds()))


def _new_code_wait(address: str, now) -> int:
    """Seconds until the address may be sent a new code: at once (1) unless its codes in the
    window are used up."""
    recent = SignInCode.objects.filter(created_at__gte=now - LIMIT_WINDOW, address=address)
    if recent.count() < settings.ENGAGE_SIGN_IN_CODES_PER_ADDRESS:
        return 1
    return _retry_after(recent.order_by("created_at").first(), now)


def sign_in_code_request(*, raw_address: str, ip_address: str | None) -> SignInCode:
    """Record a code for the address and, when a member has it, send it to them."""
    target = sign_in_address_parse(raw_address)
    now = timezone.now()
    since = now - LIMIT_WINDOW
    recent = SignInCode.objects.filter(created_at__gte=since)
    for scope, limit in ((recent.filter(address=target.address),
                          settings.ENGAGE_SIGN_IN_CODES_PER_ADDRESS),
                         (recent.filter(ip_address=ip_address) if ip_address else None,
                          settings.ENGAGE_SIGN_IN_CODES_PER_IP)):
        if scope is not None and scope.count() >= limit:
            raise SignInRefused("too_many_codes", "too many codes asked for; try again later",
                                retry_after=_retry_after(scope.order_by("created_at").first(),
                                                         now))
    member = _member_for(target)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    with transaction.atomic():
        row = SignInCode.objects.create(
            member=member, channel=target.channel, address=target.address, code_hash="",
            ip_address=ip_address, created_at=now,
            expires_at=now + settings.ENGAGE_SIGN_IN_CODE_TTL)
        row.code_hash = _code_hash(row.pk, code)
        row.save(update_fields=["code_hash"])
        if member is not None:
            for handler in hooks.SIGN_IN_CODE_REQUESTED:
                handler(member, target.channel, target.address, code)
    return row


def sign_in_code_verify(*, raw_address: str, code: str, ip_address: str | None) -> Member:
    """The member the code signs in, the code spent; SignInRefused otherwise, nothing else
    changed than the attempt counted."""
    target = sign_in_address_parse(raw_address)
    now = timezone.now()
    if ip_address:
        failures = SignInCode.objects.filter(
            ip_address=ip_address, created_at__gte=now - LIMIT_WINDOW,
        ).aggregate(n=Sum("attempts"))["n"] or 0
        if failures >= settings.ENGAGE_SIGN_IN_FAILURES_PER_IP:
            raise SignInRefused("too_many_attempts", "too many wrong codes; try again later",
                                retry_after=int(LIMIT_WINDOW.total_seconds()))
    with transaction.atomic():
        row = (SignInCode.objects.select_for_update()
               .filter(address=target.address, used_at__isnull=True)
               .order_by("-created_at").first())
        if row is None:
            raise SignInRefused("invalid_code", "this code is not valid; ask for a new one")
        if row.attempts >= settings.ENGAGE_SIGN_IN_CODE_ATTEMPTS:
            # This code is spent; what the caller may do next is ask for a new one.
            raise SignInRefused("too_many_attempts",
                                "too many wrong tries for this code; ask for a new one",
                                retry_after=_new_code_wait(target.address, now))
        if row.expires_at <= now:
            raise SignInRefused("expired_code", "this code has expired; ask for a new one")
        given = "".join(ch for ch in (code or "") if not ch.isspace())
        if row.member_id is None or not hmac.compare_digest(row.code_hash,
                                                            _code_hash(row.pk, given)):
            SignInCode.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
            # Raised after the atomic block commits the counted attempt.
            refused = SignInRefused("invalid_code", "this code is not valid")
        else:
            SignInCode.objects.filter(pk=row.pk).update(used_at=now)
            refused = None
    if refused is not None:
        raise refused
    return Member.objects.get(pk=row.member_id)


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def member_token_issue(*, member: Member, name: str = "") -> tuple[MemberToken, str]:
    """A new app token for the member: the row and the raw token, which is shown only now."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = MemberToken.objects.create(member=member, key_hash=_token_hash(raw),
                                       name=name[:100])
    return token, raw


# Every app call runs this, so it is one statement written out rather than a queryset: the
# ORM's compile of the join cost ~1.2 ms of CPU per call, four times the query's own round trip.
_MEMBER_ROWS = ModelRows(Member)
_TOKEN_MEMBER_SQL = (
    f"SELECT {_MEMBER_ROWS.select('m')}, t.id, t.name, t.last_used_at "
    f"FROM {MemberToken._meta.db_table} t JOIN {Member._meta.db_table} m ON m.id = t.member_id "
    f"WHERE t.key_hash = %s AND t.revoked_at IS NULL AND m.status = %s")


def member_token_member(raw: str) -> tuple[Member, MemberToken] | None:
    """The active member and live token a raw token stands for, or None."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    with prepared_cursor() as cursor:
        cursor.execute(_TOKEN_MEMBER_SQL, [_token_hash(raw), Member.Status.ACTIVE])
        row = cursor.fetchone()
    if row is None:
        return None
    member = _MEMBER_ROWS.instance(row)
    token_id, name, last_used_at = row[len(_MEMBER_ROWS.columns):]
    # The columns the request needs; the others load on access, as for .only().
    token = MemberToken.from_db(None, ["id", "member_id", "name", "last_used_at"],
                                [token_id, member.pk, name, last_used_at])
    token.member = member
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_LAST_USED_RESOLUTION:
        MemberToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return member, token


def member_token_revoke(*, member: Member, token_id: int) -> bool:
    """Revoke one of the member's own tokens; False when they have no such live token."""
    return bool(MemberToken.objects.filter(
        pk=token_id, member=member, revoked_at__isnull=True,
    ).update(revoked_at=timezone.now()))
