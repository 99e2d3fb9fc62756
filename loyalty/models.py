from __future__ import annotations

from typing import Any

from django.db import models

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

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="order_external_id_unique")
        ]
        indexes = [
            # Per-member purchase rules probe it, and sum amounts from it without the heap.
            models.Index(fields=["member", "placed_at"], include=["total"],
                         name="order_member_placed_idx"),
            # Purchase rules over a window ("2+ orders in 90 days") read only this index on
            # PostgreSQL: the window, then the member and amount it aggregates.
            models.Index(fields=["placed_at"], include=["member", "total"],
                         name="order_placed_idx"),
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
    type = models.CharField(max_length=64, db_index=True)
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
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.member_id} {self.occurred_at:%Y-%m-%d %H:%M}"
