"""Lesson 10's exercises: geospatial indexes, graded on fresh data.

Every function gets ``r`` (``decode_responses=True``) and key names under the case's prefix.
The cities are lesson 10's, as (longitude, latitude).
"""

from __future__ import annotations

from typing import Any

import redis

from . import Case, Spec, unless_none

CITIES = {  # name: (longitude, latitude), as in the lesson
    "Paris": (2.3522, 48.8566),
    "London": (-0.1276, 51.5072),
    "Brussels": (4.3517, 50.8503),
    "Amsterdam": (4.9041, 52.3676),
    "Berlin": (13.4050, 52.5200),
    "Zurich": (8.5417, 47.3769),
    "Vienna": (16.3738, 48.2082),
    "Madrid": (-3.7038, 40.4168),
    "Rome": (12.4964, 41.9028),
    "Lisbon": (-9.1393, 38.7223),
}


def _cities(r: redis.Redis, key: str) -> None:
    r.geoadd(key, [item for name, (lon, lat) in CITIES.items() for item in (lon, lat, name)])


# ---------------------------------------------------------------------------------------------
# 1. The n nearest members of a point, with distances.


def nearest(r, key: str, lon: float, lat: float, radius_km: float, n: int) -> list[tuple[str, int]]:
    """The `n` members of the geo index `key` nearest to the point at longitude `lon`, latitude
    `lat`, among those at most `radius_km` kilometres away: a list of (member, distance in km
    rounded to the nearest kilometre), nearest first. Fewer when fewer are in range; a missing
    index has none."""
    found = r.geosearch(key, longitude=lon, latitude=lat, radius=radius_km, unit="km",
                        sort="ASC", count=n, withdist=True)
    return [(member, round(km)) for member, km in found]


def _point_case(lon: float, lat: float, radius_km: float, n: int, *, index: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, float, float, float, int]:
        if index:
            _cities(r, f"{prefix}cities")
        return f"{prefix}cities", lon, lat, radius_km, n

    return setup


def nearest_lat_lon(r, key, lon, lat, radius_km, n):
    found = r.geosearch(key, longitude=lat, latitude=lon, radius=radius_km, unit="km",  # swapped
                        sort="ASC", count=n, withdist=True)
    return [(member, round(km)) for member, km in found]


def nearest_truncated(r, key, lon, lat, radius_km, n):
    found = r.geosearch(key, longitude=lon, latitude=lat, radius=radius_km, unit="km",
                        sort="ASC", count=n, withdist=True)
    return [(member, int(km)) for member, km in found]  # 523.69 km becomes 523


def nearest_any(r, key, lon, lat, radius_km, n):
    found = r.geosearch(key, longitude=lon, latitude=lat, radius=radius_km, unit="km",
                        sort="ASC", count=n, any=True, withdist=True)  # the first n found, not the nearest
    return [(member, round(km)) for member, km in found]


def nearest_in_metres(r, key, lon, lat, radius_km, n):
    found = r.geosearch(key, longitude=lon, latitude=lat, radius=radius_km,  # unit defaults to metres
                        sort="ASC", count=n, withdist=True)
    return [(member, round(km)) for member, km in found]


# ---------------------------------------------------------------------------------------------
# 2. Loading rows that come as (name, latitude, longitude), poles included.


def load_places(r, key: str, places: list[tuple[str, float, float]]) -> int:
    """Add `places`, a list of (name, latitude, longitude) rows as a spreadsheet gives them, to the
    geo index `key`, skipping the rows Redis cannot index (latitude beyond ±85.05112878°), and
    return how many members are new in the index (a name already there is moved, not new)."""
    values = []
    for name, lat, lon in places:
        if -85.05112878 <= lat <= 85.05112878:
            values += [lon, lat, name]  # GEOADD takes longitude first
    return r.geoadd(key, values) if values else 0


def _places_case(places: list[tuple[str, float, float]], already: dict[str, tuple[float, float]] | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[tuple[str, float, float]]]:
        if already:
            r.geoadd(f"{prefix}places", [item for name, (lon, lat) in already.items() for item in (lon, lat, name)])
        return f"{prefix}places", places

    return setup


def _positions(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and every member of the index with its position (6 decimals)."""
    key = f"{prefix}places"
    members = r.zrange(key, 0, -1)
    positions: Any = r.geopos(key, *members) if members else []
    return result, sorted((m, round(lon, 6), round(lat, 6)) for m, (lon, lat) in zip(members, positions))


EUROPE = [("Paris", 48.8566, 2.3522), ("Berlin", 52.52, 13.405), ("Lisbon", 38.7223, -9.1393)]


def load_places_lat_first(r, key, places):
    values = [item for name, lat, lon in places if abs(lat) <= 85.05112878 for item in (lat, lon, name)]
    return r.geoadd(key, values) if values else 0


def load_places_unfiltered(r, key, places):
    values = [item for name, lat, lon in places for item in (lon, lat, name)]
    return r.geoadd(key, values) if values else 0


def load_places_below_85(r, key, places):
    values = [item for name, lat, lon in places if abs(lat) < 85 for item in (lon, lat, name)]
    return r.geoadd(key, values) if values else 0


def load_places_counting_rows(r, key, places):
    values = [item for name, lat, lon in places if abs(lat) <= 85.05112878 for item in (lon, lat, name)]
    if values:
        r.geoadd(key, values)
    return len(values) // 3  # rows sent, not members new


# ---------------------------------------------------------------------------------------------
# 3. A ring around a member: farther than one distance, within another.


def ring(r, key: str, center: str, inner_km: float, outer_km: float) -> list[str]:
    """The members of the geo index `key` farther than `inner_km` and at most `outer_km` kilometres
    from its member `center`, nearest first. An empty list when `center` is not in the index (or
    the index is missing). Leave nothing new in Redis."""
    if r.zscore(key, center) is None:
        return []  # GEOSEARCH FROMMEMBER answers a missing member with an error
    found = r.geosearch(key, member=center, radius=outer_km, unit="km", sort="ASC", withdist=True)
    return [member for member, km in found if km > inner_km]


def _ring_case(center: str, inner_km: float, outer_km: float, *, index: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, float, float]:
        if index:
            _cities(r, f"{prefix}cities")
        return f"{prefix}cities", center, inner_km, outer_km

    return setup


def _keys_left(r: redis.Redis, prefix: str, result: object) -> tuple[object, list[str]]:
    """What the call returned, and the keys under the prefix afterwards."""
    return result, sorted(r.scan_iter(match=f"{prefix}*"))


def ring_inner_included(r, key, center, inner_km, outer_km):
    if r.zscore(key, center) is None:
        return []
    found = r.geosearch(key, member=center, radius=outer_km, unit="km", sort="ASC", withdist=True)
    return [member for member, km in found if km >= inner_km]  # the center, at 0 km, is not farther than 0


def ring_stored(r, key, center, inner_km, outer_km):
    if r.zscore(key, center) is None:
        return []
    zone = f"{key}:zone"
    r.geosearchstore(zone, key, member=center, radius=outer_km, unit="km", storedist=True)
    return r.zrange(zone, f"({inner_km}", outer_km, byscore=True)  # and the zone stays behind


def ring_missing_center_errors(r, key, center, inner_km, outer_km):
    found = r.geosearch(key, member=center, radius=outer_km, unit="km", sort="ASC", withdist=True)
    return [member for member, km in found if km > inner_km]


def ring_by_name(r, key, center, inner_km, outer_km):
    if r.zscore(key, center) is None:
        return []
    found = r.geosearch(key, member=center, radius=outer_km, unit="km", withdist=True)
    return sorted(member for member, km in found if km > inner_km)


EXERCISES = (
    Spec(
        number=1,
        title="the nearest cities",
        reference=nearest,
        cases=(
            Case("Luxembourg (6.1319, 49.6116), three within 1,000 km", _point_case(6.1319, 49.6116, 1_000, 3)),
            Case("Vienna's own coordinates, two within 1,000 km (Berlin is 523.69 km away)",
                 _point_case(16.3738, 48.2082, 1_000, 2)),
            Case("Luxembourg, five within 300 km: only two are", _point_case(6.1319, 49.6116, 300, 5)),
            Case("the middle of the Atlantic (-30, 45): nobody within 500 km", _point_case(-30.0, 45.0, 500, 3)),
            Case("a missing index", _point_case(6.1319, 49.6116, 1_000, 3, index=False)),
        ),
        hint="GEOSEARCH takes longitude then latitude, a unit, a sort order and a COUNT; round() is "
             "not int().",
        wrong=(nearest_lat_lon, nearest_truncated, nearest_any, nearest_in_metres),
    ),
    Spec(
        number=2,
        title="load rows that come latitude first",
        reference=load_places,
        outcome=unless_none(_positions),
        cases=(
            Case("Paris, Berlin and Lisbon", _places_case(EUROPE)),
            Case("Paris is already in the index, at an old position",
                 _places_case(EUROPE, already={"Paris": (2.0, 48.0), "Rome": (12.4964, 41.9028)})),
            Case("the North Pole (90°), a point at 85.05° N and one at 85.06° S",
                 _places_case([("North Pole", 90.0, 0.0), ("Edge", 85.05, 10.0), ("Too far south", -85.06, 10.0),
                               ("Berlin", 52.52, 13.405)])),
            Case("Tokyo and Sydney", _places_case([("Tokyo", 35.6895, 139.6917), ("Sydney", -33.8688, 151.2093)])),
            Case("the same name twice in the rows", _places_case([("Rome", 41.9, 12.5), ("Rome", 41.9028, 12.4964)])),
            Case("no rows at all", _places_case([])),
        ),
        hint="Redis wants longitude before latitude, refuses latitudes beyond ±85.05112878° (failing "
             "the whole command), and GEOADD's reply counts new members.",
        wrong=(load_places_lat_first, load_places_unfiltered, load_places_below_85, load_places_counting_rows),
    ),
    Spec(
        number=3,
        title="a delivery ring around a city",
        reference=ring,
        outcome=unless_none(_keys_left),
        cases=(
            Case("Vienna, 500 to 1,000 km", _ring_case("Vienna", 500, 1_000)),
            Case("Paris, 0 to 400 km: Paris itself is 0 km away, not farther than 0", _ring_case("Paris", 0, 400)),
            Case("Lisbon, 0 to 400 km: nobody", _ring_case("Lisbon", 0, 400)),
            Case("a center not in the index (Prague)", _ring_case("Prague", 0, 1_000)),
            Case("a missing index", _ring_case("Vienna", 0, 1_000, index=False)),
        ),
        hint="GEOSEARCH FROMMEMBER includes the member itself at 0 km and fails on a member the index "
             "does not have; WITHDIST gives each distance to filter on.",
        wrong=(ring_inner_included, ring_stored, ring_missing_center_errors, ring_by_name),
    ),
)
