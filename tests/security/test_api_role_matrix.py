"""The API's access matrix, generated from the OpenAPI schema, so an endpoint added later is
checked as soon as the schema lists it:

- anonymous: every operation answers 401 or 403, except the few public ones listed here (a new
  public endpoint fails the suite until it is listed);
- each staff role: let through exactly when the role holds the permissions the endpoint's view
  declares (config.permissions: the queryset's model and the method or action, or the view's
  `staff_permissions` / `staff_action_permissions`; the integration API's scopes), never a 5xx;
  a view whose permission this suite cannot read fails it;
- member A with member B's ids in the path or the query (/api/v1/me/...): 404 or 403, and
  nothing of B's in any answer.

Path parameters are filled with real objects made by the factories."""

from __future__ import annotations

import functools
import json
import re
import uuid
from typing import Any

import pytest
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from communications.models import Mailing
from config.permissions import STANDARD_ACTIONS, StaffModelPermissions
from config.roles import ROLES
from loyalty.integration.authentication import SCOPE_PERMISSIONS
from loyalty.integration.models import Voucher
from loyalty.models import Event
from loyalty.webhooks.models import WebhookDelivery
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.services import subscription_create
from members.authentication import IsMember
from members.models import Device, FeedbackMessage, MemberToken
from members.services.sign_in import member_token_issue
from tests.campaigns.factories import (
    CampaignFactory,
    PromoContentFactory,
    StaticListFactory,
    StaticListMemberFactory,
    TargetGroupFactory,
)
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import (
    FavoriteProductsOfferFactory,
    LoyaltyAccountFactory,
    OrderFactory,
    TierFactory,
)
from tests.members.factories import DeviceFactory, MemberFactory, SuppressionFactory
from tests.members.feedback_samples import thread_of
from tests.roles_support import staff_user

pytestmark = pytest.mark.django_db

# Operations anyone may call: a member asks for a sign-in code and trades it for a token.
PUBLIC = {("POST", "/api/v1/me/sign-in/"), ("POST", "/api/v1/me/sign-in/verify/")}
METHODS = ("get", "post", "put", "patch", "delete")
# Reads first, deletions last: a role's deletion must not hide an object from later calls.
ORDER = {"GET": 0, "PUT": 1, "PATCH": 1, "POST": 2, "DELETE": 3}
REFUSED = (401, 403)


@functools.lru_cache(maxsize=1)
def _operations() -> tuple[tuple[str, str], ...]:
    # Built once per run: generating the schema costs about a second.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = [(method.upper(), path) for path, operations in schema["paths"].items()
             if path.startswith("/api/") for method in operations if method in METHODS]
    return tuple(sorted(found, key=lambda op: (ORDER[op[0]], op[1])))


def _fill(path: str, ids: dict[str, Any]) -> str:
    """The path with its parameters set: by the resource the path names, then by name."""
    resource = path.split("/")[3]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        for key in (f"{resource}:{name}", name):
            if key in ids:
                return str(ids[key])
        raise AssertionError(f"{path}: no object for {{{name}}}; add one to the matrix's "
                             "objects")
    return re.sub(r"\{([^}]+)\}", value, path)


# --- what each operation needs -------------------------------------------------------------

def _view(method: str, path: str) -> tuple[type, str | None]:
    match = resolve(path)
    cls = match.func.cls
    actions = getattr(match.func, "actions", None) or {}
    return cls, actions.get(method.lower())


def _model_perm(model: Any, verb: str) -> str:
    return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"


def _needed(method: str, path: str) -> frozenset[str] | None:
    """The permissions a staff user needs, read from the view as config.permissions documents
    them; None: no staff user may call it (the member's own API)."""
    cls, action = _view(method, path)
    classes = list(cls.permission_classes)
    if classes == [StaffModelPermissions]:
        explicit = getattr(cls, "staff_permissions", None)
        if explicit is not None:
            return frozenset(explicit.get(method, ())) or None
        queryset = getattr(cls, "queryset", None)
        if queryset is None:
            if not hasattr(cls, "get_queryset"):
                raise AssertionError(f"{method} {path}: {cls.__name__} names no permission "
                                     "(no queryset, no staff_permissions)")
            view = cls()
            view.kwargs, view.request, view.format_kwarg, view.action = {}, None, None, action
            queryset = view.get_queryset()
        model = queryset.model
        overrides = getattr(cls, "staff_action_permissions", {})
        if action in overrides:
            return frozenset(perm if "." in perm else _model_perm(model, perm)
                             for perm in overrides[action])
        if action not in STANDARD_ACTIONS:
            return frozenset({_model_perm(model, "view" if method == "GET" else "change")})
        verb = {"GET": "view", "POST": "add", "PUT": "change", "PATCH": "change",
                "DELETE": "delete"}[method]
        return frozenset({_model_perm(model, verb)})
    if len(classes) == 1 and classes[0].__name__.startswith("HasScope("):
        return frozenset(SCOPE_PERMISSIONS[classes[0].__name__[len("HasScope("):-1]])
    if classes in ([IsMember], [AllowAny]):
        return None
    raise AssertionError(f"{method} {path}: {cls.__name__} has permissions this matrix cannot "
                         f"read ({classes}); say here what it needs")


# --- the objects the paths name --------------------------------------------------------------

@pytest.fixture
def objects() -> dict[str, Any]:
    member = MemberFactory(email="support-case@example.com")
    thread = thread_of(member)
    mailing = MailingFactory()
    trigger = MailingFactory(kind=Mailing.Kind.TRIGGER)
    subscription, _ = subscription_create(url="https://hooks.example.com/engage")
    Event.objects.create(id=uuid.uuid4(), type="ORDER_PLACED", occurred_at=mailing.created_at,
                         member=member, payload={"order": "A-1"})
    webhooks_relay_pass()
    order = OrderFactory(member=member)
    return {
        "campaigns:id": CampaignFactory().pk,
        "feedback:thread_id": thread.pk,
        "feedback:message_id": FeedbackMessage.objects.filter(thread=thread).first().pk,
        "integration:external_id": order.external_id,
        "integration:code": Voucher.objects.create(code="V-MATRIX", member=member,
                                                   issued_at=mailing.created_at).code,
        "mailings:id": mailing.pk,
        "members:id": member.pk,
        "offers:id": PromoContentFactory().pk,
        "static-lists:id": StaticListFactory().pk,
        "suppressions:id": SuppressionFactory().pk,
        "target-groups:id": TargetGroupFactory().pk,
        "trigger-mailings:id": trigger.pk,
        "webhooks:id": subscription.pk,
        "webhook-deliveries:id": WebhookDelivery.objects.get(subscription=subscription).pk,
        # the member's own API, for the staff and anonymous callers: another member's objects
        "device_id": DeviceFactory(member=member).pk, "thread_id": thread.pk,
        "message_id": MessageFactory(member=member).pk, "offer_id": PromoContentFactory().pk,
        "token_id": member_token_issue(member=member, name="x")[0].pk,
    }


def _call(client: APIClient, method: str, path: str):
    return client.generic(method, path, "{}", content_type="application/json")


def test_the_schema_lists_the_api():
    operations = _operations()

    assert len(operations) > 80
    assert PUBLIC <= set(operations)


def test_anonymous_callers_reach_only_the_public_operations(objects):
    client = APIClient()

    answers = {(method, path): _call(client, method, _fill(path, objects)).status_code
               for method, path in _operations()}

    assert {op for op, status in answers.items() if status not in REFUSED} == PUBLIC
    assert [op for op, status in answers.items() if status >= 500] == []


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_reaches_exactly_what_its_permissions_allow(role, objects):
    client = APIClient()
    client.force_authenticate(staff_user(role))
    held = set(ROLES[role])

    wrong, errors = {}, {}
    for method, path in _operations():
        if (method, path) in PUBLIC:
            continue
        filled = _fill(path, objects)
        needed = _needed(method, filled)
        expected = needed is not None and needed <= held
        status = _call(client, method, filled).status_code
        if status >= 500:
            errors[(method, path)] = status
        elif (status not in REFUSED) != expected:
            wrong[(method, path)] = (status, sorted(needed or ()))

    assert errors == {}
    assert wrong == {}


# --- member A with member B's ids ------------------------------------------------------------

@pytest.fixture
def two_members(member_api_client):
    """Member A's client, and member B with one of each thing the member API names by id."""
    member_a = MemberFactory(email="member-a@example.com")
    member_b = MemberFactory(email="member-b@example.com", first_name="Bertram",
                             external_id="B-EXTERNAL-7731")
    only_b = StaticListMemberFactory(member=member_b, static_list=StaticListFactory()).static_list
    group = TargetGroupFactory(rules={"field": "static_list", "op": "member_of",
                                      "value": only_b.pk})
    thread = thread_of(member_b, text="B's private question about parcel 4471")
    b_ids = {
        "device_id": DeviceFactory(member=member_b, token="b-push-token-998877").pk,
        "thread_id": thread.pk,
        "feedback:message_id": FeedbackMessage.objects.filter(thread=thread).first().pk,
        "messages:message_id": MessageFactory(member=member_b).pk,
        "token_id": member_token_issue(member=member_b, name="B's phone")[0].pk,
        "offer_id": PromoContentFactory(target_group=group, title="Only for Bertram").pk,
        # a favorite-products offer of B's tier only (A has no loyalty account)
        "favorite-products:offer_id": FavoriteProductsOfferFactory(
            tiers=[LoyaltyAccountFactory(member=member_b, tier=TierFactory(code="gold")).tier]).pk,
    }
    return member_api_client(member_a), member_a, member_b, b_ids


B_MARKERS = ("member-b@example.com", "Bertram", "B-EXTERNAL-7731", "parcel 4471",
             "b-push-token-998877", "B's phone", "Only for Bertram")


def _member_fill(path: str, b_ids: dict[str, Any]) -> str:
    parts = path.split("/")
    resource = parts[4] if len(parts) > 4 else ""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        for key in (f"{resource}:{name}", name):
            if key in b_ids:
                return str(b_ids[key])
        raise AssertionError(f"{path}: no object of member B for {{{name}}}")
    return re.sub(r"\{([^}]+)\}", value, path)


def _member_operations() -> list[tuple[str, str]]:
    return [(method, path) for method, path in _operations()
            if path.startswith("/api/v1/me/") and (method, path) not in PUBLIC]


# Bodies that pass validation, so the call reaches the check of whose object it is.
MEMBER_BODIES = {
    "/api/v1/me/favorite-products/{offer_id}/picks/": {"product_ids": []},
    "/api/v1/me/feedback/{thread_id}/messages/": {"text": "Let me in"},
}
MISSING_ID = 2_000_000_000


def _member_call(client: APIClient, method: str, template: str, path: str):
    body = MEMBER_BODIES.get(template, {})
    return client.generic(method, path, json.dumps(body), content_type="application/json")


def test_member_a_gets_nothing_of_member_b_by_id(two_members):
    # B's object answers as one that does not exist would: refused, and no oracle either
    client, _, member_b, b_ids = two_members
    by_id = [(m, p) for m, p in _member_operations() if "{" in p]
    missing = dict.fromkeys(b_ids, MISSING_ID)

    answers = {(m, p): (_member_call(client, m, p, _member_fill(p, b_ids)),
                        _member_call(client, m, p, _member_fill(p, missing)).status_code)
               for m, p in by_id}

    assert len(by_id) >= 8
    wrong = {op: (r.status_code, status_missing)
             for op, (r, status_missing) in answers.items()
             if r.status_code not in (403, 404) or r.status_code != status_missing}
    assert wrong == {}
    leaked = {op: [m for m in B_MARKERS if m in r.content.decode(errors="replace")]
              for op, (r, _) in answers.items()}
    assert {op: found for op, found in leaked.items() if found} == {}


def test_member_b_keeps_what_member_a_tried_to_change(two_members):
    client, _, member_b, b_ids = two_members

    for method, path in _member_operations():
        if "{" in path and method != "GET":
            _member_call(client, method, path, _member_fill(path, b_ids))

    assert Device.objects.get(pk=b_ids["device_id"]).is_active
    assert MemberToken.objects.filter(pk=b_ids["token_id"], revoked_at__isnull=True).exists()
    assert FeedbackMessage.objects.filter(thread_id=b_ids["thread_id"]).count() == 1


def test_member_a_lists_only_their_own_even_with_b_ids_in_the_query(two_members):
    client, _, member_b, b_ids = two_members
    query = "&".join(f"{name}={member_b.pk}" for name in
                     ("member", "member_id", "id", "external_id", "thread", "device"))

    answers = {path: client.get(f"{path}?{query}") for method, path in _member_operations()
               if method == "GET" and "{" not in path}

    assert [path for path, r in answers.items() if r.status_code >= 500] == []
    leaked = {path: [m for m in B_MARKERS if m in r.content.decode(errors="replace")]
              for path, r in answers.items()}
    assert {path: found for path, found in leaked.items() if found} == {}
