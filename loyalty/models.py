from __future__ import annotations

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
        indexes = [models.Index(fields=["member", "placed_at"], name="order_member_placed_idx")]

    def __str__(self) -> str:
        return self.external_id


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.order_id}: {self.quantity} x {self.product_id}"
