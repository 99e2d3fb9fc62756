"""Who a mailing goes to: a target group, a static list (an uploaded address list becomes one)
or a single member, exactly one of them."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Min, QuerySet
from django.utils import timezone

from campaigns.models import StaticList
from campaigns.selectors import target_group_members
from campaigns.services import static_list_of_addresses
from communications.address_lists import ADDRESS_FIELDS, AddressListReport
from communications.models import Mailing
from members.models import Member

AUDIENCE_SOURCES = ("target_group", "static_list", "member")
# From `preparing` on the audience is frozen into messages.
AUDIENCE_EDITABLE_STATES = (Mailing.State.DRAFT, Mailing.State.SCHEDULED,
                            Mailing.State.RECURRING)


def mailing_audience_errors(*, mailing: Mailing) -> dict[str, str]:
    """What is wrong with the mailing's choice of audience, keyed by the field to fix."""
    chosen = [name for name in AUDIENCE_SOURCES if getattr(mailing, f"{name}_id") is not None]
    if not chosen:
        return {"target_group": "a mailing needs an audience: a target group, a static list "
                                "or a single member"}
    if len(chosen) > 1:
        return {chosen[1]: "a mailing has one audience: choose a target group, a static list "
                           "or a single member, not " + " and ".join(
                               name.replace("_", " ") for name in chosen)}
    return {}


def mailing_audience(*, mailing: Mailing) -> QuerySet[Member]:
    """The members the mailing's audience selects, as one lazily evaluated queryset."""
    if mailing.target_group_id is not None:
        return target_group_members(target_group=mailing.target_group)
    if mailing.static_list_id is not None:
        return Member.objects.filter(static_list_entries__static_list_id=mailing.static_list_id)
    return Member.objects.filter(pk=mailing.member_id)


def mailing_audience_bounds(*, mailing: Mailing) -> tuple[int, int]:
    """The lowest and highest member id the audience can hold, to cut it into parts: a list
    or a single member need not be looked for over the whole member table."""
    if mailing.member_id is not None:
        return mailing.member_id, mailing.member_id
    if mailing.static_list_id is not None:
        bounds = mailing.static_list.entries.aggregate(first=Min("member_id"),
                                                       last=Max("member_id"))
    else:
        bounds = Member.objects.aggregate(first=Min("pk"), last=Max("pk"))
    return bounds["first"] or 0, bounds["last"] or 0


@transaction.atomic
def mailing_address_list_attach(*, mailing: Mailing, report: AddressListReport) -> StaticList:
    """Make the members who have the addresses of an uploaded list (read by
    `address_lists.address_list_read`) the mailing's audience, in place of any other.

    The list is kept as a static list with the file's counts (total, valid, unknown,
    invalid), so the marketer sees them before scheduling. Addresses no member has are
    counted as unknown and not sent to: without a member there is no consent to send on.
    """
    mailing = (Mailing.objects.select_for_update(of=("self",)).select_related("template")
               .get(pk=mailing.pk))
    if mailing.state not in AUDIENCE_EDITABLE_STATES:
        raise ValidationError({"state": f"a {mailing.state} mailing's audience is frozen"})
    if mailing.template_id is None:
        raise ValidationError({"template": "choose the template first: its channel says "
                                           "which addresses the list holds"})
    if report.channel != mailing.template.channel:
        raise ValidationError({"address_list": f"the list holds {report.channel} addresses, "
                                               f"the mailing sends {mailing.template.channel}"})
    now = timezone.now()
    static_list = static_list_of_addresses(
        name=f"Address list of mailing {mailing.pk} ({now:%Y-%m-%d %H:%M:%S.%f})",
        field=ADDRESS_FIELDS[report.channel], addresses=report.addresses,
        report=address_report_summary(report), now=now,
        description=f"The members with the {report.channel} addresses uploaded for the "
                    f"mailing {mailing.name!r}.")
    mailing.static_list, mailing.target_group, mailing.member = static_list, None, None
    mailing.save(update_fields=["static_list", "target_group", "member"])
    return static_list


def address_report_summary(report: AddressListReport) -> dict:
    """What is kept of a read list beside its members (not the addresses themselves)."""
    return {
        "channel": report.channel, "total": report.total, "valid": report.valid,
        "unknown": report.unknown, "invalid": report.invalid, "duplicates": report.duplicates,
        "invalid_examples": [{"line": bad.line, "value": bad.value, "reason": bad.reason}
                             for bad in report.invalid_examples],
    }
