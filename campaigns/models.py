from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.utils import timezone

from members.models import Member

# A touch older than this cannot be credited, whatever the campaign says: attribution reads a
# member's messages of this many days before an order (communications.services.attribution).
ATTRIBUTION_WINDOW_MAX_DAYS = 30


class AttributionTouch(models.TextChoices):
    """How deep a message must have engaged its member to be credited with their order, in
    the order of depth (each includes those after it)."""

    DELIVERED = "delivered", "Delivered, opened or clicked"
    OPENED = "opened", "Opened or clicked"
    CLICKED = "clicked", "Clicked"


class Campaign(models.Model):
    """A marketing effort with a goal, a period and a budget; its mailings, trigger mailings
    and promo content point at it. Its spend is rolled up from its messages' costs
    (`campaigns.selectors_spend`), and its channel mix is that of its mailings: neither is
    stored."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        ACTIVE = "active", "Active"
        FINISHED = "finished", "Finished"
        ARCHIVED = "archived", "Archived"

    name = models.CharField(max_length=200)
    goal = models.TextField(blank=True, help_text="What the campaign is meant to achieve.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED,
                              db_default=Status.PLANNED)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    budget = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True,
        help_text="Also its cap: once its messages cost this much, its sending mailings pause "
                  "(ENGAGE_BUDGET_CAP). Blank: no budget.")
    currency = models.CharField(max_length=3, default="EUR")
    # The attribution rule (communications.services.attribution): an order is credited to the
    # campaign whose message touched the member last, at least this deep, within the window.
    attribution_touch = models.CharField(
        max_length=16, choices=AttributionTouch.choices, default=AttributionTouch.DELIVERED,
        db_default=AttributionTouch.DELIVERED,
        help_text="The least engagement that counts as a touch: delivered (or opened or "
                  "clicked), opened (or clicked), or clicked.")
    attribution_window_days = models.PositiveSmallIntegerField(
        default=7, db_default=7,
        validators=[MinValueValidator(1), MaxValueValidator(ATTRIBUTION_WINDOW_MAX_DAYS)],
        help_text="Orders placed this many days after a touch are credited to it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(attribution_window_days__gte=1,
                                   attribution_window_days__lte=ATTRIBUTION_WINDOW_MAX_DAYS),
                name="campaign_attribution_window_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(ends_on__isnull=True)
                | models.Q(starts_on__isnull=True)
                | models.Q(ends_on__gte=models.F("starts_on")),
                name="campaign_period_ordered",
            )
        ]

    def __str__(self) -> str:
        return self.name


class TargetGroup(models.Model):
    """Who a mailing talks to: a rule tree over members, their purchases and engagement.

    The tree is validated JSON (`campaigns.rules`) that compiles to one queryset; an empty tree
    means every member. A watched group also keeps its current members in
    `TargetGroupMembership`, so changes to a member can say whether they entered or left it.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    is_watched = models.BooleanField(
        default=False,
        help_text="Keep the membership current and emit TARGET_GROUP_ENTERED / LEFT events.")
    watched_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from campaigns.rules import rules_error_lines, rules_validate

        try:
            rules_validate(self.rules, target_group=self if self.pk else None)
        except ValidationError as error:
            # Errors are keyed by the path in the tree (`rules.and[2].value`), which is no
            # model field: keep the path in the text and put them on `rules` for forms.
            raise ValidationError({"rules": rules_error_lines(error)}) from error


class TargetGroupMembership(models.Model):
    """A member currently in a watched target group, since when."""

    target_group = models.ForeignKey(TargetGroup, on_delete=models.CASCADE,
                                     related_name="memberships", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="target_group_memberships")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["target_group", "member"],
                                    name="target_group_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.target_group_id}"


class StaticList(models.Model):
    """A fixed set of members: uploaded ids, a CSV of external ids, or a frozen target group."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        FROZEN = "frozen", "Frozen from a target group"
        ADDRESS_LIST = "address", "Members of an uploaded address list"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.UPLOAD)
    frozen_from = models.ForeignKey(TargetGroup, on_delete=models.SET_NULL, null=True,
                                    blank=True, related_name="frozen_lists")
    taken_at = models.DateTimeField(help_text="When its members were taken.")
    size = models.PositiveIntegerField(default=0)
    # For an address list: what the file held (total, valid, unknown, invalid, duplicates,
    # the first invalid lines); only the valid addresses some member has became entries.
    address_report = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self) -> str:
        return self.name


class StaticListMember(models.Model):
    static_list = models.ForeignKey(StaticList, on_delete=models.CASCADE,
                                    related_name="entries", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="static_list_entries")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["static_list", "member"],
                                    name="static_list_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in list {self.static_list_id}"


# --- promo content ---------------------------------------------------------------------------

UNSAFE_LINK_SCHEMES = frozenset({"javascript", "data", "vbscript", "file"})


def link_url_problem(url: str) -> str:
    """What is wrong with an offer's link ('' when nothing): an http(s) URL for the account
    pages and the app, or a deep link (`myapp://offers/7`) that only the app opens."""
    scheme, separator, rest = url.partition("://")
    if not separator or not rest or not scheme.isascii() or not scheme[:1].isalpha() \
            or not all(char.isalnum() or char in "+.-" for char in scheme):
        return "must be an https://... URL or an app deep link (myapp://...)"
    if scheme.lower() in UNSAFE_LINK_SCHEMES:
        return f"a {scheme}: link is refused"
    if scheme.lower() in ("http", "https"):
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            return "is not a valid web address"
    return ""


class PromoContent(models.Model):
    """An offer the member sees in the account pages and the app (DESIGN: promo content).

    Shown while active, in its placement, from `show_days_before` days before `starts_at`
    until `ends_at`, to the members of `target_group` (none: every member). `shown_from` is
    that first moment, kept by `promo_content_save` so the member's query compares columns.
    """

    class Placement(models.TextChoices):
        ACCOUNT = "account", "Account pages"
        APP = "app", "App"
        BOTH = "both", "Account pages and app"

    title = models.CharField(max_length=120)
    text = models.TextField(blank=True, max_length=2000)
    image_url = models.CharField(
        max_length=500, blank=True, validators=[URLValidator(
            schemes=["https"], message="must be an https:// URL (apps refuse plain http images)")],
        help_text="An https:// image, about 1200×600; apps refuse plain http images.")
    link_url = models.CharField(
        max_length=500, blank=True,
        help_text="What the call to action opens: a web URL (https://...) or an app deep link "
                  "(myapp://offers/7, shown in the app only).")
    link_label = models.CharField(max_length=40, blank=True,
                                  help_text="The call to action's text, e.g. “Get the coupon”.")
    priority = models.IntegerField(default=0, help_text="Higher shows first.")
    campaign = models.ForeignKey(Campaign, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="offers")
    placement = models.CharField(max_length=8, choices=Placement.choices,
                                 default=Placement.BOTH)
    # PROTECT: a deleted group would otherwise turn a targeted offer into one for everybody.
    target_group = models.ForeignKey(
        TargetGroup, on_delete=models.PROTECT, null=True, blank=True, related_name="offers",
        verbose_name="audience", help_text="Who sees it; empty: every member.")
    starts_at = models.DateTimeField(help_text="The offer is valid from…")
    ends_at = models.DateTimeField(help_text="…until; it is hidden from then on.")
    show_days_before = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(365)],
        help_text="Shown this many days before it starts (announced), 0: from the start.")
    shown_from = models.DateTimeField(editable=False)
    is_active = models.BooleanField(default=True, help_text="Off: hidden whatever the dates.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "offer"
        ordering = ["-priority", "starts_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                   name="promo_content_period_ordered"),
            models.CheckConstraint(condition=models.Q(shown_from__lte=models.F("starts_at")),
                                   name="promo_content_shown_before_start"),
        ]
        indexes = [
            # The member's query: live offers only, so the ended ones piling up cost nothing.
            models.Index(fields=["ends_at"], condition=models.Q(is_active=True),
                         name="promo_content_live_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.link_url:
            problem = link_url_problem(self.link_url)
            if problem:
                errors["link_url"] = problem
        elif self.link_label:
            errors["link_label"] = "a call to action needs the link it opens (link_url)"
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "must be after the start"
        if self.target_group_id is not None:
            from campaigns.rules import rules_error_lines, rules_validate

            group = self.target_group
            try:
                rules_validate(group.rules, target_group=group)
            except ValidationError as error:
                errors["target_group"] = ("the group's rules are invalid, so nobody would see "
                                          "the offer: " + "; ".join(rules_error_lines(error)))
        if errors:
            raise ValidationError(errors)

    def link_opens_web(self) -> bool:
        return self.link_url.lower().startswith(("https://", "http://"))

    def starts_later(self) -> bool:
        """Shown in its display window before it starts: the card says when it starts."""
        return self.starts_at > timezone.now()


class PromoContentDay(models.Model):
    """An offer's views and clicks on one day: one row per offer and day, incremented in place
    (INSERT … ON CONFLICT DO UPDATE), however many members look."""

    offer = models.ForeignKey(PromoContent, on_delete=models.CASCADE, related_name="days",
                              db_index=False)
    day = models.DateField()
    views = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["offer", "day"], name="promo_content_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.offer_id} on {self.day}: {self.views} views, {self.clicks} clicks"
