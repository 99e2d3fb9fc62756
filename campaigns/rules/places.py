"""Conditions on where the member is: within a distance of a point or of a store.

City and region are profile fields. Distance is the haversine great-circle distance on a
sphere of the Earth's mean radius; the query compares haversine's `a` term with the bound's
(monotonic, so no arcsine per row) behind a latitude/longitude box that only narrows it.
"""

from __future__ import annotations

import math
from typing import Any

from django.db.models import F, FloatField, Q, Value
from django.db.models.functions import Cos, Power, Radians, Sin

from campaigns.rules.spec import Condition, FieldSpec, RuleValueError, lookup, parse_number
from loyalty.models import Store

EARTH_RADIUS_KM = 6371.0088
MAX_KM = 20_000.0


def within_km_q(cond: Condition, compiler: Any) -> Q:
    lat0, lon0, km = cond.value["lat"], cond.value["lon"], cond.value["km"]
    angle = km / EARTH_RADIUS_KM
    located = Q(latitude__isnull=False, longitude__isnull=False)
    if angle >= math.pi:
        return located
    # The box is a prefilter only: a little wider than the circle, and dropped where it
    # would wrap around a pole or the antimeridian.
    dlat = math.degrees(angle) * 1.01
    box = Q(latitude__gte=lat0 - dlat, latitude__lte=lat0 + dlat)
    if abs(lat0) + dlat < 89 and math.sin(angle) < math.cos(math.radians(lat0)):
        dlon = math.degrees(math.asin(math.sin(angle) / math.cos(math.radians(lat0)))) * 1.01
        if -180 <= lon0 - dlon and lon0 + dlon <= 180:
            box &= Q(longitude__gte=lon0 - dlon, longitude__lte=lon0 + dlon)
    lat1 = Radians(F("latitude"), output_field=FloatField())
    lon1 = Radians(F("longitude"), output_field=FloatField())
    half_dlat = (lat1 - Value(math.radians(lat0))) / Value(2.0)
    half_dlon = (lon1 - Value(math.radians(lon0))) / Value(2.0)
    a = (Power(Sin(half_dlat), 2)
         + Cos(lat1) * Value(math.cos(math.radians(lat0))) * Power(Sin(half_dlon), 2))
    bound = math.sin(angle / 2) ** 2
    return located & box & Q(lookup(a, "lte", bound))


def _parse_place(op: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise RuleValueError('must be {"lat", "lon", "km"} or {"store", "km"}')
    unknown = set(raw) - {"lat", "lon", "km", "store"}
    if unknown:
        raise RuleValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    km = parse_number(raw.get("km"))
    if not 0 < km <= MAX_KM:
        raise RuleValueError(f"km must be above 0 and at most {MAX_KM:,.0f}")
    if "store" in raw:
        if "lat" in raw or "lon" in raw:
            raise RuleValueError("give a store or lat/lon, not both")
        store = Store.objects.filter(code=raw["store"]).values("latitude", "longitude").first()
        if store is None:
            raise RuleValueError(f"unknown store {raw['store']!r}")
        return {"lat": store["latitude"], "lon": store["longitude"], "km": km}
    try:
        lat, lon = parse_number(raw.get("lat")), parse_number(raw.get("lon"))
    except RuleValueError as exc:
        raise RuleValueError("lat and lon must be numbers") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RuleValueError("lat must be within -90..90 and lon within -180..180")
    # To 0.1 mm: a coordinate like 1e-300 would underflow PostgreSQL's float arithmetic
    # (an error, not a zero) in the distance.
    return {"lat": round(lat, 9), "lon": round(lon, 9), "km": km}


FIELDS: list[FieldSpec] = [
    FieldSpec(key="location", label="Location", family="Location", kind="place",
              ops=("within_km",), compile=within_km_q, parse=_parse_place,
              help='Within km of a point {"lat", "lon", "km"} or a store {"store", "km"}.'),
]
