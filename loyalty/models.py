from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from members.models import Member


class Tier(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(
        default=0, help_text="Higher is better: the order tiers are climbed in."
    )

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class LoyaltyAccount(models.Model):
    """A member's standing in the program, kept beside the member so `members` stays the base."""

    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, related_name="loyalty_account", primary_key=True
    )
    tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts"
    )
    tier_since = models.DateTimeField(null=True, blank=True)
    points_balance = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier or 'no tier'}"


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class Store(models.Model):
    """A shop of the program, so a target group can say "within 5 km of the Riga store"."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    latitude = models.FloatField()
    longitude = models.FloatField()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(latitude__gte=-90, latitude__lte=90,
                                   longitude__gte=-180, longitude__lte=180),
                name="store_location_valid",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    # Covered by order_member_placed_idx.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    external_id = models.CharField(max_length=64)
    placed_at = models.DateTimeField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    # What the program gave on the order: the discount already taken off `total`, and the
    # points it earned. Campaign reports add them up for the orders credited to a campaign.
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=0, db_default=0)
    points_earned = models.IntegerField(default=0, db_default=0)
    # Refunds add up here (loyalty.integration.services.order_refund), never past `total`.
    refunded_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0,
                                          db_default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # When the order was written, stamped in the writing transaction (as an event's
    # recorded_at is): attribution reads the orders recorded since its position.
    recorded_at = models.DateTimeField(default=timezone.now, db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="order_external_id_unique"),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__gte=0,
                                   refunded_amount__lte=models.F("total")),
                name="order_refund_within_total"),
        ]
        indexes = [
            # Per-member purchase rules probe it, and sum amounts from it without the heap.
            models.Index(fields=["member", "placed_at"], include=["total"],
                         name="order_member_placed_idx"),
            # Purchase rules over a window ("2+ orders in 90 days") read only this index on
            # PostgreSQL: the window, then the member and amount it aggregates.
            models.Index(fields=["placed_at"], include=["member", "total"],
                         name="order_placed_idx"),
            models.Index(fields=["recorded_at"], name="order_recorded_idx"),
        ]

    def __str__(self) -> str:
        return self.external_id


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    # The order's member and time, copied onto its lines so that "bought coffee in the last
    # year" is one range scan of the member's lines (orderline_member_placed_idx) instead of
    # a join of every order line with its order: 5.3 s of a 7.5 s target-group count over 1M
    # members and 21M lines went to that join. Kept equal to the order's by `save` and by
    # loyalty.services.order_lines_follow (an order edited after its lines were written).
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+",
                               db_index=False, editable=False)
    placed_at = models.DateTimeField(editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["member", "placed_at"], include=["product"],
                         name="orderline_member_placed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.quantity} x {self.product_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.member_id = self.order.member_id
        self.placed_at = self.order.placed_at
        super().save(*args, **kwargs)


class Event(models.Model):
    """One entry of the event log: something that happened to a member, in the catalog's words.

    Events are written in the same transaction as the change they describe (the log is the
    outbox), and their payload carries a version so consumers can tell shapes apart.
    """

    class Type(models.TextChoices):
        MEMBER_REGISTERED = "MEMBER_REGISTERED"
        PROFILE_UPDATED = "PROFILE_UPDATED"
        ORDER_PLACED = "ORDER_PLACED"
        ORDER_REFUNDED = "ORDER_REFUNDED"
        VOUCHER_ISSUED = "VOUCHER_ISSUED"
        VOUCHER_REDEEMED = "VOUCHER_REDEEMED"
        POINTS_EARNED = "POINTS_EARNED"
        POINTS_SPENT = "POINTS_SPENT"
        TIER_CHANGED = "TIER_CHANGED"
        CONSENT_CHANGED = "CONSENT_CHANGED"
        MESSAGE_DELIVERED = "MESSAGE_DELIVERED"
        MESSAGE_OPENED = "MESSAGE_OPENED"
        MESSAGE_CLICKED = "MESSAGE_CLICKED"
        TARGET_GROUP_ENTERED = "TARGET_GROUP_ENTERED"
        TARGET_GROUP_LEFT = "TARGET_GROUP_LEFT"
        BIRTHDAY = "BIRTHDAY"
        POINTS_EXPIRING = "POINTS_EXPIRING"
        CART_ABANDONED = "CART_ABANDONED"

    id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=64)  # indexed with recorded_at (Meta.indexes)
    occurred_at = models.DateTimeField()
    # Kept when the member is erased: the event's meaning survives, the person does not.
    member = models.ForeignKey(Member, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="events", db_index=False)
    payload = models.JSONField(default=dict, blank=True)
    version = models.PositiveSmallIntegerField(default=1)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["member", "occurred_at"], name="event_member_idx"),
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
            # The log's readers take what was recorded after their position: the webhook relay
            # every event (in order), a trigger the events of its type.
            models.Index(fields=["recorded_at", "id"], name="event_recorded_idx"),
            models.Index(fields=["type", "recorded_at"], name="event_type_recorded_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.member_id} {self.occurred_at:%Y-%m-%d %H:%M}"


class FavoriteProductsOffer(models.Model):
    """A marketer's "pick your favorite products" offer: for its period, each member in its
    audience picks up to `pick_limit` products from their own candidate list, and the loyalty
    engine gives the benefit on those products (it reads the picks from the staff API).

    A member's candidates are computed when asked for (loyalty.favorites.selectors), from the
    fixed list, from their purchase history in the `history_days` before the offer starts, or
    both; anchoring the window on the start keeps the list still while the offer runs.
    """

    class Benefit(models.TextChoices):
        PERCENT_DISCOUNT = "percent_discount", "Percent discount"
        EXTRA_POINTS = "extra_points", "Extra points"

    class CandidateSource(models.TextChoices):
        HISTORY = "history", "Purchase history by category"
        FIXED = "fixed", "Fixed list of products"
        BOTH = "both", "Both: the fixed list and the purchase history"

    name = models.CharField(max_length=200, help_text="Shown to members.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    picks_locked_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Members may change their picks until this time; empty: until the offer ends.")
    pick_limit = models.PositiveSmallIntegerField(
        default=3, help_text="How many products a member may pick.")
    benefit = models.CharField(max_length=16, choices=Benefit.choices)
    benefit_value = models.DecimalField(
        max_digits=9, decimal_places=2,
        help_text="The percent off (1–100) or the extra points per product (a whole number).")
    candidate_source = models.CharField(max_length=8, choices=CandidateSource.choices,
                                        default=CandidateSource.HISTORY)
    products = models.ManyToManyField(
        Product, blank=True, related_name="favorite_offers",
        help_text="The fixed list: candidates of every member (sources 'fixed' and 'both').")
    history_days = models.PositiveSmallIntegerField(
        default=180, help_text="How many days of purchases before the offer starts count.")
    history_categories = models.PositiveSmallIntegerField(
        default=3, help_text="Products come from this many of the member's most bought "
                             "categories.")
    history_products = models.PositiveSmallIntegerField(
        default=12, help_text="At most this many candidates from the history (beside the fixed "
                              "list): the products the member bought most, then the others of "
                              "those categories by name.")
    tiers = models.ManyToManyField(
        Tier, blank=True, related_name="favorite_offers",
        help_text="Only members of these tiers see the offer; none: every member.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["ends_at", "starts_at"], name="favoriteoffer_period_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                   name="favoriteoffer_period_valid"),
            models.CheckConstraint(condition=models.Q(pick_limit__gte=1),
                                   name="favoriteoffer_pick_limit_positive"),
            models.CheckConstraint(condition=models.Q(benefit_value__gt=0),
                                   name="favoriteoffer_benefit_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def uses_history(self) -> bool:
        return self.candidate_source in (self.CandidateSource.HISTORY, self.CandidateSource.BOTH)

    @property
    def uses_fixed_list(self) -> bool:
        return self.candidate_source in (self.CandidateSource.FIXED, self.CandidateSource.BOTH)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The offer must end after it starts."
        if self.picks_locked_at and self.starts_at and self.ends_at and not (
                self.starts_at < self.picks_locked_at <= self.ends_at):
            errors["picks_locked_at"] = "Picks must lock after the start, at the end at the latest."
        if self.benefit_value is not None:
            if self.benefit_value <= 0:
                errors["benefit_value"] = "The benefit must be more than zero."
            elif (self.benefit == self.Benefit.PERCENT_DISCOUNT and self.benefit_value > 100):
                errors["benefit_value"] = "A percent discount is at most 100."
            elif (self.benefit == self.Benefit.EXTRA_POINTS
                  and self.benefit_value != self.benefit_value.to_integral_value()):
                errors["benefit_value"] = "Extra points are a whole number."
        if self.pick_limit is not None and self.pick_limit < 1:
            errors["pick_limit"] = "Members must be able to pick at least one product."
        if self.uses_history and (not self.history_days or not self.history_categories
                                  or not self.history_products):
            errors["candidate_source"] = ("Purchase-history candidates need the days, the "
                                          "number of categories and of products above zero.")
        if errors:
            raise ValidationError(errors)


class FavoriteProductsSelection(models.Model):
    """One member's picks of one offer: the row the loyalty engine polls (`updated_at`), kept
    when the member clears their picks so the engine learns of that too."""

    offer = models.ForeignKey(FavoriteProductsOffer, on_delete=models.CASCADE,
                              related_name="selections")
    # Covered by favoriteselection_unique (member first).
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="favorite_product_selections", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(help_text="When the member last changed these picks.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "offer"], name="favoriteselection_unique"),
        ]
        indexes = [
            # The engine's poll: one offer's selections changed since a time, in that order.
            models.Index(fields=["offer", "updated_at", "id"], name="favoriteselection_poll_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.offer_id}"


class FavoriteProductPick(models.Model):
    selection = models.ForeignKey(FavoriteProductsSelection, on_delete=models.CASCADE,
                                  related_name="picks", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT,
                                related_name="favorite_picks")
    picked_at = models.DateTimeField(help_text="When the member first picked it; a save that "
                                               "keeps it keeps this time.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["selection", "product"], name="favoritepick_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.selection_id}: {self.product_id}"


# The integration API's models live beside their sub-domain; importing them here makes them
# part of this app.
from loyalty.integration.models import (  # noqa: E402, F401
    ApiKey,
    CustomEventType,
    IdempotencyKey,
    Voucher,
)

# Outgoing webhooks live in their own module; imported here so they are this app's models.
from loyalty.webhooks.models import (  # noqa: E402, F401
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
