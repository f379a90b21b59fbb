"""Real movement and real stores for the demo: GeoLife trips and Beijing Starbucks.

GeoLife (Microsoft Research) holds GPS fixes of two people around Beijing in 2008, one
every 1–5 s. They are cut into trips at gaps of more than 10 minutes; a phone of the demo
replays one person's trips one after the other, as that person lived them.

Stores go where the traces go, so visits keep coming: the busiest 150 m cells of the
trips (where trips start and end, the places people stay, and where many trips pass) each
get the nearest Beijing store of the Starbucks directory, moved onto that cell. The
directory's coordinates are rounded to about 1 km anyway.

Both files come from `../shared/data` (or `GEOPUSH_DEMO_DATA`); without them, from the
small samples bundled in `geopush/demo_data`.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from geopush.geo.earth import distance_m

TRIP_GAP_S = 600
MIN_TRIP_FIXES = 120
CELL_M = 150.0
MIN_STORE_SPACING_M = 600.0
BEIJING = (39.9, 116.4)


@dataclass(frozen=True)
class Fix:
    t: float  # seconds since the trip's first fix
    lat: float
    lon: float


@dataclass(frozen=True)
class Trip:
    person: str
    fixes: tuple[Fix, ...]
    gap_before_s: float  # rest since the person's previous trip ended

    @property
    def duration_s(self) -> float:
        return self.fixes[-1].t


@dataclass(frozen=True)
class StoreSite:
    number: str
    name: str
    lat: float
    lon: float
    moved_m: float  # from the directory's position onto the traces


def _data_dirs() -> Iterator[Path]:
    for folder in (os.environ.get("GEOPUSH_DEMO_DATA", ""), "../shared/data", "shared/data"):
        if folder:
            yield Path(folder)


def _geolife_text() -> tuple[str, str]:
    for folder in _data_dirs():
        path = folder / "geolife_sample.txt.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read(), str(path)
    sample = resources.files("geopush").joinpath("demo_data/geolife_trips.csv.gz")
    return gzip.decompress(sample.read_bytes()).decode("utf-8"), "bundled GeoLife sample"


def load_trips() -> tuple[list[Trip], str]:
    """Every trip of every person, in time order per person; and where they came from."""
    text, source = _geolife_text()
    per_person: dict[str, list[tuple[float, float, float]]] = {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    i_lat, i_lon, i_ts, i_uid = (header.index(k) for k in ("lat", "lng", "datetime", "uid"))
    for row in reader:
        ts = datetime.fromisoformat(row[i_ts]).timestamp()
        lat, lon = float(row[i_lat]), float(row[i_lon])
        if abs(lat - BEIJING[0]) < 1 and abs(lon - BEIJING[1]) < 1:  # a few fixes are junk
            per_person.setdefault(row[i_uid], []).append((ts, lat, lon))
    trips: list[Trip] = []
    for person, fixes in sorted(per_person.items()):
        trips += _split(person, sorted(fixes))
    return trips, source


def _split(person: str, fixes: list[tuple[float, float, float]]) -> list[Trip]:
    """One person's fixes (time-sorted) cut into trips at gaps of more than TRIP_GAP_S."""
    runs: list[list[tuple[float, float, float]]] = [[]]
    for fix in fixes:
        if runs[-1] and fix[0] - runs[-1][-1][0] > TRIP_GAP_S:
            runs.append([])
        if not runs[-1] or fix[0] > runs[-1][-1][0]:
            runs[-1].append(fix)
    trips: list[Trip] = []
    last_end: float | None = None
    for points in runs:
        if len(points) < MIN_TRIP_FIXES:
            continue
        t0 = points[0][0]
        gap = 0.0 if last_end is None else t0 - last_end
        trips.append(Trip(person, tuple(Fix(t - t0, la, lo) for t, la, lo in points), gap))
        last_end = points[-1][0]
    return trips


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return (round(lat * 111_132.954 / CELL_M),
            round(lon * 111_319.49 * math.cos(math.radians(40.0)) / CELL_M))


def busy_places(trips: list[Trip], count: int) -> list[tuple[float, float]]:
    """Centres of the `count` busiest cells, at least MIN_STORE_SPACING_M apart.

    A trip's ends count three times (people stay there, so dwell happens); a cell a trip
    passes through counts once per trip.
    """
    score: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], tuple[float, float]] = {}
    for trip in trips:
        seen = set()
        for fix in trip.fixes:
            cell = _cell(fix.lat, fix.lon)
            where.setdefault(cell, (fix.lat, fix.lon))
            seen.add(cell)
        score.update(seen)
        for end in (trip.fixes[0], trip.fixes[-1]):
            score[_cell(end.lat, end.lon)] += 2
    chosen: list[tuple[float, float]] = []
    for cell, _ in score.most_common():
        lat, lon = where[cell]
        if all(distance_m(lon, lat, b, a) >= MIN_STORE_SPACING_M for a, b in chosen):
            chosen.append((lat, lon))
            if len(chosen) == count:
                break
    return chosen


def _directory_rows() -> tuple[list[dict[str, str]], str]:
    for folder in _data_dirs():
        path = folder / "starbucks_directory.csv"
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r["Country"] == "CN"
                        and ("北京" in r["City"] or "beijing" in r["City"].lower())
                        and r["Latitude"] and r["Longitude"]
                        # a few rows say Beijing with coordinates far away
                        and distance_m(BEIJING[1], BEIJING[0], float(r["Longitude"]),
                                       float(r["Latitude"])) < 100_000]
            return rows, str(path)
    sample = resources.files("geopush").joinpath("demo_data/stores_beijing.csv")
    with sample.open(encoding="utf-8") as f:
        return list(csv.DictReader(f)), "bundled store sample"


def place_stores(places: list[tuple[float, float]]) -> tuple[list[StoreSite], str]:
    """The nearest directory store not yet used for each place, moved onto the place."""
    rows, source = _directory_rows()
    used: set[str] = set()
    sites = []
    for lat, lon in places:
        best = min((r for r in rows if r["Store Number"] not in used),
                   key=lambda r: distance_m(lon, lat, float(r["Longitude"]),
                                            float(r["Latitude"])))
        used.add(best["Store Number"])
        sites.append(StoreSite(best["Store Number"], best["store_name"].strip(), lat, lon,
                               distance_m(lon, lat, float(best["Longitude"]),
                                          float(best["Latitude"]))))
    return sites, source
