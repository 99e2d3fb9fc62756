from __future__ import annotations

from rest_framework import serializers

from loyalty.integration.models import Voucher


class OrderLineInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, default=1)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)


class OrderInSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=64)
    member = serializers.CharField(max_length=64, help_text="The member's external id.")
    placed_at = serializers.DateTimeField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    currency = serializers.CharField(min_length=3, max_length=3, default="EUR")
    discount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, default=0,
                                        help_text="The discount already taken off `total`.")
    points_earned = serializers.IntegerField(min_value=0, default=0)
    lines = OrderLineInSerializer(many=True, allow_empty=True, default=list)


class OrderRefundInSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False,
        help_text="What is refunded; left out: whatever is left of the order's total.")
    refunded_at = serializers.DateTimeField(required=False)


class OrderOutSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    member = serializers.CharField(source="member.external_id")
    placed_at = serializers.DateTimeField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    discount = serializers.DecimalField(max_digits=12, decimal_places=2)
    points_earned = serializers.IntegerField()
    refunded_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    refunded_at = serializers.DateTimeField(allow_null=True)


class VoucherInSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    member = serializers.CharField(max_length=64, help_text="The member's external id.")
    kind = serializers.ChoiceField(choices=Voucher.Kind.choices, default=Voucher.Kind.AMOUNT)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, default=0)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class VoucherRedeemSerializer(serializers.Serializer):
    order = serializers.CharField(max_length=64, required=False, allow_null=True, default=None,
                                  help_text="The external id of the order it was used in.")


class VoucherOutSerializer(serializers.ModelSerializer):
    member = serializers.CharField(source="member.external_id")

    class Meta:
        model = Voucher
        fields = ["code", "member", "kind", "value", "issued_at", "expires_at", "redeemed_at"]


class EventInSerializer(serializers.Serializer):
    """For the schema only: events_ingest checks the events itself, to report a batch's errors
    by index with stable codes."""

    type = serializers.CharField(help_text="A catalog type (ORDER_PLACED, …) or a custom one.")
    member = serializers.CharField(required=False, allow_null=True,
                                   help_text="The member's external id.")
    occurred_at = serializers.DateTimeField(required=False)
    payload = serializers.DictField(required=False)
    version = serializers.IntegerField(required=False, min_value=1, default=1)


class EventBatchInSerializer(serializers.Serializer):
    events = EventInSerializer(many=True)
