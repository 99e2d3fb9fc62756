"""What the favorite-products API says: the member's offers and picks, and the engine's feed."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from loyalty.favorites.selectors import Candidate, MemberFavoriteOffer
from loyalty.models import FavoriteProductPick, FavoriteProductsOffer, FavoriteProductsSelection

MAX_PICKS_SENT = 100


class BenefitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=FavoriteProductsOffer.Benefit.choices,
                                   source="benefit")
    value = serializers.DecimalField(max_digits=9, decimal_places=2, source="benefit_value",
                                     help_text="Percent off, or extra points per product.")


class CandidateSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="product_id", help_text="The product's id, to pick.")
    sku = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    picked = serializers.SerializerMethodField()

    def get_picked(self, candidate: Candidate) -> bool:
        return candidate.product_id in self.context["picked_ids"]


class MemberPickSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    sku = serializers.CharField(source="product.sku")
    name = serializers.CharField(source="product.name")
    picked_at = serializers.DateTimeField()


class MemberFavoriteOfferSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="offer.pk")
    name = serializers.CharField(source="offer.name")
    starts_at = serializers.DateTimeField(source="offer.starts_at")
    ends_at = serializers.DateTimeField(source="offer.ends_at")
    picks_locked_at = serializers.DateTimeField(
        source="offer.picks_locked_at", allow_null=True,
        help_text="Picks may be changed until then; null: until the offer ends.")
    limit = serializers.IntegerField(source="offer.pick_limit",
                                     help_text="How many products the member may pick.")
    benefit = BenefitSerializer(source="offer")
    can_change = serializers.BooleanField(help_text="False once the picks are locked.")
    candidates = serializers.SerializerMethodField(
        help_text="The products the member may pick from (and any they picked earlier that "
                  "are no longer candidates, to keep or drop).")
    picks = MemberPickSerializer(many=True)

    @extend_schema_field(CandidateSerializer(many=True))
    def get_candidates(self, entry: MemberFavoriteOffer) -> list[dict[str, Any]]:
        return CandidateSerializer(entry.choices, many=True,
                                   context={"picked_ids": entry.picked_ids}).data


class MemberFavoritesSerializer(serializers.Serializer):
    offers = MemberFavoriteOfferSerializer(many=True)


class PicksReplaceSerializer(serializers.Serializer):
    product_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=True,
        max_length=MAX_PICKS_SENT,
        help_text="The products the member picks, replacing their picks of the offer; an "
                  "empty list drops them all.")


class EnginePickSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku")

    class Meta:
        model = FavoriteProductPick
        fields = ["sku", "picked_at"]


class EngineSelectionSerializer(serializers.ModelSerializer):
    member_external_id = serializers.CharField(
        help_text="The member's id in the loyalty engine.")
    product_skus = serializers.SerializerMethodField(
        help_text="The picked products; empty when the member dropped every pick.")
    picks = EnginePickSerializer(many=True, help_text="Each pick with when it was made.")
    updated_at = serializers.DateTimeField(help_text="When the member last changed the picks.")

    class Meta:
        model = FavoriteProductsSelection
        fields = ["offer", "member_external_id", "product_skus", "picks", "updated_at"]

    def get_product_skus(self, selection: FavoriteProductsSelection) -> list[str]:
        return [pick.product.sku for pick in selection.picks.all()]
